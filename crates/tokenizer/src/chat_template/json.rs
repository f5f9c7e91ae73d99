//! The `tojson` filter of chat templates, printing like Python's `json.dumps`, which is what
//! transformers installs in place of Jinja's own (HTML-escaping, compact) `tojson`.
//!
//! Python's defaults: items separated by ", " and keys by ": " ("," and ": " once `indent` is given),
//! non-ASCII characters written as they are (`ensure_ascii=False` in transformers' filter), keys in
//! insertion order unless `sort_keys`. The value goes through `serde_json` with a [`Formatter`] that
//! writes those separators and that indentation; strings use serde_json's escapes, which are Python's
//! (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, `\u00XX` for other control characters).
//!
//! Python signature mirrored: `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.

use std::io;

use minijinja::value::{Kwargs, Rest};
use minijinja::{Error, ErrorKind, Value};
use serde::Serialize;
use serde_json::ser::Formatter;

pub(super) fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments after the value",
        ));
    }
    // Positional arguments fill the parameters in order; keywords fill them by name.
    let mut params: [Option<Value>; 4] = Default::default();
    for (slot, arg) in params.iter_mut().zip(args.iter()) {
        *slot = Some(arg.clone());
    }
    for (slot, name) in params.iter_mut().zip(NAMES) {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            *slot = Some(v);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = params;
    let ensure_ascii = ensure_ascii.is_some_and(|v| v.is_true());
    let sort_keys = sort_keys.is_some_and(|v| v.is_true());
    let indent: Option<String> = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_owned(),
            None => {
                let n = i64::try_from(v.clone()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("tojson indent must be an int or a string, not {v}"),
                    )
                })?;
                " ".repeat(n.max(0) as usize)
            }
        }),
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let pair: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|s| s.to_string()).collect())
                .unwrap_or_default();
            match <[String; 2]>::try_from(pair) {
                Ok([item, key]) => (item, key),
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson separators must be a pair of strings",
                    ));
                }
            }
        }
        _ => (
            (if indent.is_some() { "," } else { ", " }).to_owned(),
            ": ".to_owned(),
        ),
    };

    let mut json = serde_json::to_value(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: value is not JSON: {e}"),
        )
    })?;
    if sort_keys {
        sort_recursively(&mut json);
    }
    let formatter = PyFormatter {
        indent: indent.as_deref().map(str::as_bytes),
        item_sep: item_sep.as_bytes(),
        key_sep: key_sep.as_bytes(),
        ensure_ascii,
        level: 0,
        has_value: false,
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    json.serialize(&mut ser)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    // Only valid UTF-8 went in, and escapes are ASCII.
    String::from_utf8(out)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))
}

fn sort_recursively(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> =
                std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut value) in entries {
                sort_recursively(&mut value);
                map.insert(key, value);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_recursively),
        _ => {}
    }
}

/// serde_json output shaped like Python's json.dumps (see the module header).
struct PyFormatter<'a> {
    /// The unit written once per nesting level after each newline; `None` = everything on one line.
    indent: Option<&'a [u8]>,
    item_sep: &'a [u8],
    key_sep: &'a [u8],
    ensure_ascii: bool,
    level: usize,
    /// Whether the innermost open container has had an element (decides the newline before its close).
    has_value: bool,
}

impl PyFormatter<'_> {
    fn newline<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        if let Some(unit) = self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.level {
                w.write_all(unit)?;
            }
        }
        Ok(())
    }

    fn open<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }

    fn element<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if !first {
            w.write_all(self.item_sep)?;
        }
        self.newline(w)
    }
}

impl Formatter for PyFormatter<'_> {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.element(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.element(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(self.key_sep)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.ensure_ascii || fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        // Python writes each UTF-16 unit as \uxxxx, lower-case hex.
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    fn render(expr: &str) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", super::tojson);
        let source = format!("{{{{ {expr} }}}}");
        env.render_str(&source, minijinja::context! {})
            .unwrap_or_else(|e| format!("ERROR {e}"))
    }

    // Expected strings are what Python's json.dumps prints for the same arguments.
    #[test]
    fn matches_python_json_dumps() {
        assert_eq!(
            render("{'b': 1, 'a': [1, 2.5, none, true, false]} | tojson"),
            r#"{"b": 1, "a": [1, 2.5, null, true, false]}"#
        );
        assert_eq!(
            render("{'a': [1, {'c': []}], 'b': {}} | tojson(indent=2)"),
            "{\n  \"a\": [\n    1,\n    {\n      \"c\": []\n    }\n  ],\n  \"b\": {}\n}"
        );
        assert_eq!(render("[1, 2] | tojson(indent=0)"), "[\n1,\n2\n]");
        assert_eq!(render("[1, 2] | tojson(indent='\t')"), "[\n\t1,\n\t2\n]");
        assert_eq!(render("'é<&>\\'\"\n🦀' | tojson"), "\"é<&>'\\\"\\n🦀\"");
        assert_eq!(
            render("'é🦀' | tojson(ensure_ascii=true)"),
            r#""\u00e9\ud83e\udd80""#
        );
        assert_eq!(render("'é' | tojson(true)"), r#""\u00e9""#);
        assert_eq!(
            render("{'b': {'z': 1, 'y': 2}, 'a': 0} | tojson(sort_keys=true)"),
            r#"{"a": 0, "b": {"y": 2, "z": 1}}"#
        );
        assert_eq!(
            render("{'a': [1, 2]} | tojson(separators=(',', ':'))"),
            r#"{"a":[1,2]}"#
        );
        assert_eq!(
            render("{'a': 1} | tojson(indent=2, separators=(',', ' = '))"),
            "{\n  \"a\" = 1\n}"
        );
        assert_eq!(render("'\u{1}' | tojson"), r#""\u0001""#);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(render("1 | tojson(indent=[1])").starts_with("ERROR"));
        assert!(render("1 | tojson(separators=',')").starts_with("ERROR"));
        assert!(render("1 | tojson(bogus=1)").starts_with("ERROR"));
        assert!(render("1 | tojson(1, 2, 3, 4, 5)").starts_with("ERROR"));
    }
}
