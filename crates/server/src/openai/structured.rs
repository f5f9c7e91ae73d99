//! The structured-output fields of both generation endpoints and their conversion into the
//! engine's [`StructuredOutput`]: OpenAI's `response_format` (`text`, `json_object`,
//! `json_schema`), vLLM's `structured_outputs` (`json`, `regex`, `choice`, `grammar`,
//! `json_object`) and its older `guided_json`, `guided_regex`, `guided_choice`,
//! `guided_grammar`. At most one constraint per request; each form names its field in a
//! 400. Whether the schema, regex or grammar itself is valid is the compiler's to say
//! (llguidance, when the request is submitted), with the parser's message.

use ingot_engine::api::StructuredOutput;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::ApiError;

/// The structured-output fields, read from the same body as the rest of the request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StructuredFields {
    pub response_format: Option<Value>,
    pub structured_outputs: Option<Value>,
    pub guided_json: Option<Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<Vec<String>>,
    pub guided_grammar: Option<String>,
}

impl StructuredFields {
    /// The request's constraint, if it has one.
    pub fn constraint(&self) -> Result<Option<StructuredOutput>, ApiError> {
        let mut found: Vec<(&str, StructuredOutput)> = Vec::new();
        if let Some(f) = &self.response_format
            && let Some(c) = response_format(f)?
        {
            found.push(("response_format", c));
        }
        if let Some(s) = self.structured_outputs.as_ref().filter(|v| !v.is_null()) {
            for c in structured_outputs(s)? {
                found.push(("structured_outputs", c));
            }
        }
        if let Some(j) = self.guided_json.as_ref().filter(|v| !v.is_null()) {
            found.push(("guided_json", schema_text("guided_json", j)?));
        }
        if let Some(r) = &self.guided_regex {
            found.push(("guided_regex", StructuredOutput::Regex(r.clone())));
        }
        if let Some(c) = &self.guided_choice {
            found.push(("guided_choice", choice("guided_choice", c)?));
        }
        if let Some(g) = &self.guided_grammar {
            found.push(("guided_grammar", StructuredOutput::Grammar(g.clone())));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop().map(|(_, c)| c)),
            _ => {
                let names: Vec<&str> = found
                    .iter()
                    .map(|(n, c)| {
                        if *n == "structured_outputs" {
                            c.kind()
                        } else {
                            *n
                        }
                    })
                    .collect();
                Err(ApiError::invalid_param(
                    found[1].0,
                    format!(
                        "only one structured-output constraint may be given, got {}",
                        names.join(" and ")
                    ),
                ))
            }
        }
    }
}

/// A schema given as a JSON object (or boolean), or as its JSON text.
fn schema_text(param: &str, v: &Value) -> Result<StructuredOutput, ApiError> {
    match v {
        Value::String(s) => Ok(StructuredOutput::JsonSchema(s.clone())),
        Value::Object(_) | Value::Bool(_) => Ok(StructuredOutput::JsonSchema(v.to_string())),
        other => Err(ApiError::invalid_param(
            param,
            format!("a JSON schema must be an object, got {other}"),
        )),
    }
}

fn choice(param: &str, choices: &[String]) -> Result<StructuredOutput, ApiError> {
    if choices.is_empty() {
        return Err(ApiError::invalid_param(
            param,
            "choice needs at least one string",
        ));
    }
    Ok(StructuredOutput::Choice(choices.to_vec()))
}

/// OpenAI's `response_format`: None for `text`.
fn response_format(f: &Value) -> Result<Option<StructuredOutput>, ApiError> {
    const P: &str = "response_format";
    if f.is_null() {
        return Ok(None);
    }
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(StructuredOutput::JsonObject)),
        Some("json_schema") => {
            let Some(spec) = f.get("json_schema").filter(|v| v.is_object()) else {
                return Err(ApiError::invalid_param(
                    "response_format.json_schema",
                    "a json_schema response format needs 'json_schema': {\"name\", \"schema\"}",
                ));
            };
            match spec.get("schema") {
                Some(s) if !s.is_null() => {
                    schema_text("response_format.json_schema.schema", s).map(Some)
                }
                // OpenAI: a missing schema means any JSON object.
                _ => Ok(Some(StructuredOutput::JsonObject)),
            }
        }
        Some(other) => Err(ApiError::unsupported(
            P,
            format!(
                "response_format type '{other}' is not supported (text, json_object, json_schema)"
            ),
        )),
        None => Err(ApiError::invalid_param(P, "response_format needs a 'type'")),
    }
}

/// vLLM's `structured_outputs` object: its constraint fields (its options, such as
/// `disable_any_whitespace`, are accepted and ignored).
fn structured_outputs(s: &Value) -> Result<Vec<StructuredOutput>, ApiError> {
    const P: &str = "structured_outputs";
    let Some(obj) = s.as_object() else {
        return Err(ApiError::invalid_param(P, "must be an object"));
    };
    let mut out = Vec::new();
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        let param = format!("{P}.{key}");
        let text = |v: &Value| -> Result<String, ApiError> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| ApiError::invalid_param(&param, "must be a string"))
        };
        match key.as_str() {
            "json" => out.push(schema_text(&param, v)?),
            "regex" => out.push(StructuredOutput::Regex(text(v)?)),
            "grammar" => out.push(StructuredOutput::Grammar(text(v)?)),
            "choice" => {
                let choices: Vec<String> = serde_json::from_value(v.clone())
                    .map_err(|_| ApiError::invalid_param(&param, "must be a list of strings"))?;
                out.push(choice(&param, &choices)?);
            }
            "json_object" if v.as_bool() == Some(true) => {
                out.push(StructuredOutput::JsonObject);
            }
            "structural_tag" => {
                return Err(ApiError::unsupported(
                    &param,
                    "structural tags are not supported",
                ));
            }
            _ => {} // options (whitespace, backend choice): llguidance is the only backend
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn constraint(v: Value) -> Result<Option<StructuredOutput>, ApiError> {
        serde_json::from_value::<StructuredFields>(v)
            .unwrap()
            .constraint()
    }

    #[test]
    fn every_form_becomes_its_constraint() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let text = schema.to_string();
        let cases = [
            (json!({}), None),
            (json!({"response_format": {"type": "text"}}), None),
            (
                json!({"response_format": {"type": "json_object"}}),
                Some(StructuredOutput::JsonObject),
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}}),
                Some(StructuredOutput::JsonSchema(text.clone())),
            ),
            (
                json!({"structured_outputs": {"json": schema}}),
                Some(StructuredOutput::JsonSchema(text.clone())),
            ),
            (
                json!({"structured_outputs": {"regex": "a+"}}),
                Some(StructuredOutput::Regex("a+".into())),
            ),
            (
                json!({"structured_outputs": {"choice": ["x", "y"]}}),
                Some(StructuredOutput::Choice(vec!["x".into(), "y".into()])),
            ),
            (
                json!({"structured_outputs": {"grammar": "start: \"a\""}}),
                Some(StructuredOutput::Grammar("start: \"a\"".into())),
            ),
            (
                json!({"guided_json": text}),
                Some(StructuredOutput::JsonSchema(text.clone())),
            ),
            (
                json!({"guided_regex": "[0-9]+"}),
                Some(StructuredOutput::Regex("[0-9]+".into())),
            ),
            (
                json!({"guided_choice": ["a"]}),
                Some(StructuredOutput::Choice(vec!["a".into()])),
            ),
            (
                json!({"guided_grammar": "start: \"a\""}),
                Some(StructuredOutput::Grammar("start: \"a\"".into())),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(constraint(body.clone()).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn malformed_forms_are_400s_naming_the_field() {
        let cases = [
            (
                json!({"response_format": {"type": "yaml"}}),
                "response_format",
            ),
            (json!({"response_format": {}}), "response_format"),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"structured_outputs": {"regex": 5}}),
                "structured_outputs.regex",
            ),
            (
                json!({"structured_outputs": {"choice": []}}),
                "structured_outputs.choice",
            ),
            (json!({"guided_json": 5}), "guided_json"),
            (
                json!({"guided_regex": "a", "guided_choice": ["b"]}),
                "guided_choice",
            ),
        ];
        for (body, param) in cases {
            let e = constraint(body.clone()).unwrap_err();
            assert_eq!(
                e.to_json()["error"]["param"],
                param,
                "{body}: {}",
                e.to_json()
            );
        }
    }
}
