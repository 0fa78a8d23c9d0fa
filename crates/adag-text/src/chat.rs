//! Chat templates rendered the way HuggingFace transformers renders them.
//!
//! A model's chat template is a Jinja program written for Python's jinja2 as configured by
//! `transformers.utils.chat_template_utils` (`trim_blocks`, `lstrip_blocks`, loop controls, a
//! JSON-dumping `tojson`, `raise_exception`, `strftime_now`). The prompt an attribution graph is
//! computed for must be byte-identical to the one the model saw in training, so this module
//! reproduces that environment on top of minijinja and patches the places where minijinja and
//! Python differ observably:
//!
//! * `{{ value }}` prints Python's `str(value)`: `None`, `True`, `1e+16`, `['a', 1]`;
//! * `tojson` is `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//!   (no HTML escaping, Python's separators and float formatting), not minijinja's builtin;
//! * Python string/dict methods (`strip`, `startswith`, `split`, `items`, ...) come from
//!   `minijinja_contrib::pycompat`;
//! * message maps keep Python's insertion order, and keys a message does not have are undefined
//!   (templates test `message.reasoning_content is defined`);
//! * `{% generation %}` blocks (transformers' assistant-mask extension) render their body unchanged.
//!
//! Known remaining differences (none is exercised by the Llama, Qwen or Gemma templates):
//! `strftime_now` formats the current **UTC** time (Python uses local time; identical on machines
//! running in UTC); dict *literals written in a template* iterate in sorted key order (minijinja is
//! built without `preserve_order`; message maps are unaffected); Python `%` string formatting
//! (`'%s' % x`) is unsupported (an error, not wrong text); `~` concatenation prints `none`/`true`
//! the minijinja way; Python's `isprintable` is approximated when `repr`-ing strings inside
//! printed containers.

use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Environment, ErrorKind};

use crate::error::{Error, Result};

/// One chat message.
///
/// Only `role` and `content` exist because that is all adag's prompts need; the template sees the
/// message as a map with exactly these two keys, so every other key a template probes
/// (`tool_calls`, `reasoning_content`, ...) is undefined, as in transformers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ChatMessage {
    /// Speaker: `system`, `user`, `assistant`, or whatever else the template understands.
    pub role: String,
    /// Message text.
    pub content: String,
}

impl ChatMessage {
    /// Convenience constructor, because tests and callers build messages from literals.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Name under which the template is registered; it appears in template error messages.
const TEMPLATE_NAME: &str = "chat_template";

/// A compiled chat template plus the jinja environment transformers renders it in.
///
/// Compiling once at load time surfaces syntax errors when the model directory is opened rather
/// than at the first prompt, and avoids re-parsing for every prompt.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` in an environment configured like transformers' `_compile_jinja_template`.
    ///
    /// Fails with [`Error::ChatTemplate`] when the template does not parse.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| Error::ChatTemplate(format!("configuring jinja syntax: {e}")))?;
        env.set_syntax(syntax);
        // jinja2's ImmutableSandboxedEnvironment in transformers does not auto-escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            if !value.is_undefined() {
                let mut s = String::new();
                py_str(&mut s, value);
                out.write_str(&s)
                    .map_err(|_| minijinja::Error::from(ErrorKind::WriteFailure))?;
            }
            Ok(())
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson_filter);
        env.add_filter("string", |v: &Value| {
            let mut s = String::new();
            py_str(&mut s, v);
            s
        });
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(|e| {
                Error::ChatTemplate(format!("template does not compile: {}", describe(&e)))
            })?;
        Ok(Self { env })
    }

    /// Renders the conversation like `apply_chat_template(messages, tokenize=False, ...)`.
    ///
    /// `special_tokens` are the named special tokens (`bos_token`, `eos_token`, ...) passed as
    /// template variables, exactly as transformers passes `tokenizer.special_tokens_map`.
    /// `tools` and `documents` are `None` (defined, but none), as in transformers without tools.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        special_tokens: &[(String, String)],
    ) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::Input(
                "cannot apply a chat template to an empty conversation; provide at least one message"
                    .into(),
            ));
        }
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_object(PyDict(vec![
                    (Value::from("role"), Value::from(m.role.as_str())),
                    (Value::from("content"), Value::from(m.content.as_str())),
                ]))
            })
            .collect();
        let mut ctx: Vec<(Value, Value)> = special_tokens
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
            .collect();
        ctx.push((Value::from("messages"), Value::from(messages)));
        ctx.push((Value::from("tools"), Value::from(())));
        ctx.push((Value::from("documents"), Value::from(())));
        ctx.push((
            Value::from("add_generation_prompt"),
            Value::from(add_generation_prompt),
        ));
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        template
            .render(Value::from_pairs(ctx))
            .map_err(|e| Error::ChatTemplate(describe(&e)))
    }
}

/// Formats a minijinja error with its whole source chain, since the outermost error of a failing
/// filter often only says "in chat_template:12".
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(msg, ": {s}");
        source = s.source();
    }
    msg
}

/// `raise_exception(msg)`: templates call it to reject conversations they cannot format
/// (Gemma: roles must alternate). It always fails, which turns into [`Error::ChatTemplate`].
fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (transformers' assistant-mask extension) into
/// `{% if true %}` / `{% endif %}`. Whitespace-control markers are kept, so the rendered text is the
/// same as jinja2 produces with the extension (which only records offsets).
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (lead, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[b.len()..]),
            None => (body, ""),
        };
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                let _ = write!(out, "{{%{lead} {r} {trail}%}}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------
// Python-ordered dict
// ---------------------------------------------------------------------------------------------

/// A map that iterates in insertion order, like a Python dict. minijinja's own maps are sorted
/// (without its `preserve_order` feature), which would change `tojson(message)` and
/// `message.items()` output relative to transformers.
#[derive(Debug)]
struct PyDict(Vec<(Value, Value)>);

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| k.clone()).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Python str() / repr()
// ---------------------------------------------------------------------------------------------

/// Appends Python's `str(value)`: what jinja2 prints for `{{ value }}`.
fn py_str(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => py_repr(out, value),
    }
}

/// Appends Python's `repr(value)` for the JSON-like values templates handle.
fn py_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => py_number(out, value, false),
        ValueKind::String => py_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let (open, close) = if value.is_tuple() {
                ('(', ')')
            } else {
                ('[', ']')
            };
            out.push(open);
            let mut n = 0;
            if let Ok(iter) = value.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &item);
                    n += 1;
                }
            }
            if open == '(' && n == 1 {
                out.push(',');
            }
            out.push(close);
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = value.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &key);
                    out.push_str(": ");
                    py_repr(out, &value.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Appends a number as Python prints it; `json` selects `json.dumps` spellings of non-finite floats.
fn py_number(out: &mut String, value: &Value, json: bool) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else if let Ok(f) = f64::try_from(value.clone()) {
        py_float(out, f, json);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Appends Python's `repr(float)`: shortest round-trip digits, scientific notation when the decimal
/// exponent is below -4 or at least 16, always a `.0` on integral values.
fn py_float(out: &mut String, f: f64, json: bool) {
    if f.is_nan() {
        out.push_str(if json { "NaN" } else { "nan" });
        return;
    }
    if f.is_infinite() {
        let s = match (json, f > 0.0) {
            (true, true) => "Infinity",
            (true, false) => "-Infinity",
            (false, true) => "inf",
            (false, false) => "-inf",
        };
        out.push_str(s);
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e3", "5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
}

/// Approximates Python's `str.isprintable` for the characters that matter in practice (controls,
/// separators and format characters such as NBSP, zero-width space, BOM).
fn py_printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20
        || (0x7f..=0xa0).contains(&u)
        || u == 0xad
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x206f).contains(&u)
        || u == 0x3000
        || u == 0xfeff
        || (0xfff9..=0xfffb).contains(&u)
        || (0xe000..=0xf8ff).contains(&u))
}

/// Appends Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn py_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let u = c as u32;
                let _ = if u <= 0xff {
                    write!(out, "\\x{u:02x}")
                } else if u <= 0xffff {
                    write!(out, "\\u{u:04x}")
                } else {
                    write!(out, "\\U{u:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

// ---------------------------------------------------------------------------------------------
// tojson = json.dumps
// ---------------------------------------------------------------------------------------------

/// Options of Python's `json.dumps` that transformers' `tojson` exposes.
struct JsonOptions {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, positional
/// or keyword, as transformers defines it (it replaces jinja2's HTML-escaping builtin).
fn tojson_filter(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    separators: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<String, minijinja::Error> {
    let pick =
        |pos: Option<Value>, name: &str| -> std::result::Result<Option<Value>, minijinja::Error> {
            match pos {
                Some(v) => Ok(Some(v)),
                None => kwargs.get::<Option<Value>>(name),
            }
        };
    let ensure_ascii = pick(ensure_ascii, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let indent = match pick(indent, "indent")? {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_string())
        }
        Some(v) => {
            let n = i64::try_from(v.clone()).map_err(|_| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: bad indent {v}"),
                )
            })?;
            Some(" ".repeat(n.max(0) as usize))
        }
    };
    let (item_sep, key_sep) = match pick(separators, "separators")? {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => (
                    a.as_str().unwrap_or_default().to_string(),
                    b.as_str().unwrap_or_default().to_string(),
                ),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let sort_keys = kwargs
        .get::<Option<Value>>("sort_keys")?
        .is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    let opts = JsonOptions {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    json_value(&mut out, value, &opts, 0)?;
    Ok(out)
}

fn not_serializable(value: &Value) -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "tojson: object of kind {} is not JSON serializable",
            value.kind()
        ),
    )
}

fn json_newline(out: &mut String, opts: &JsonOptions, depth: usize) {
    if let Some(indent) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
}

fn json_value(
    out: &mut String,
    value: &Value,
    opts: &JsonOptions,
    depth: usize,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => py_number(out, value, true),
        ValueKind::String => json_str(out, value.as_str().unwrap_or_default(), opts.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                json_newline(out, opts, depth + 1);
                json_value(out, item, opts, depth + 1)?;
            }
            json_newline(out, opts, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                json_newline(out, opts, depth + 1);
                json_str(out, key, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                json_value(out, item, opts, depth + 1)?;
            }
            json_newline(out, opts, depth);
            out.push('}');
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

/// Dict keys as `json.dumps` coerces them: strings as-is, numbers/bools/None spelled out.
fn json_key(key: &Value) -> std::result::Result<String, minijinja::Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::None => "null".to_string(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::Number => {
            let mut s = String::new();
            py_number(&mut s, key, true);
            s
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: keys must be str, int, float, bool or None, not {}",
                    key.kind()
                ),
            ))
        }
    })
}

/// A JSON string literal as Python's encoder writes it.
fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// strftime_now
// ---------------------------------------------------------------------------------------------

/// `strftime_now(format)`: the current time formatted like Python's `datetime.strftime`.
///
/// Templates use it to stamp "Today Date: 26 Jul 2024" into system prompts. The time is UTC
/// (Python uses local time, which differs only on machines not running in UTC), and `%z`/`%Z`
/// are empty as for Python's naive datetimes.
fn strftime_now(format: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    strftime_utc(format, now.as_secs() as i64, now.subsec_micros())
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Formats a UTC timestamp with Python/glibc `strftime` directives (including the `%-d` style
/// no-padding flag). Unknown directives are copied through, as glibc does.
fn strftime_utc(format: &str, secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let wday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday; 0 = Sunday
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday0 = CUM[(month - 1) as usize] + day - 1 + u32::from(month > 2 && is_leap(year));
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = WEEKDAYS[wday];

    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let num = |out: &mut String, v: i64, width: usize| {
            if no_pad {
                let _ = write!(out, "{v}");
            } else {
                let _ = write!(out, "{v:0width$}");
            }
        };
        match chars.next() {
            Some('Y') => {
                let _ = write!(out, "{year}");
            }
            Some('y') => num(&mut out, year.rem_euclid(100), 2),
            Some('m') => num(&mut out, i64::from(month), 2),
            Some('d') => num(&mut out, i64::from(day), 2),
            Some('e') => {
                let _ = write!(out, "{day:>2}");
            }
            Some('j') => num(&mut out, i64::from(yday0 + 1), 3),
            Some('H') => num(&mut out, hour, 2),
            Some('I') => num(&mut out, hour12, 2),
            Some('M') => num(&mut out, minute, 2),
            Some('S') => num(&mut out, second, 2),
            Some('f') => {
                let _ = write!(out, "{micros:06}");
            }
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('w') => {
                let _ = write!(out, "{wday}");
            }
            Some('u') => {
                let _ = write!(out, "{}", if wday == 0 { 7 } else { wday });
            }
            Some('U') => num(&mut out, i64::from((yday0 + 7 - wday as u32) / 7), 2),
            Some('W') => num(
                &mut out,
                i64::from((yday0 + 7 - ((wday as u32 + 6) % 7)) / 7),
                2,
            ),
            Some('D') | Some('x') => {
                let _ = write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100));
            }
            Some('F') => {
                let _ = write!(out, "{year}-{month:02}-{day:02}");
            }
            Some('T') | Some('X') => {
                let _ = write!(out, "{hour:02}:{minute:02}:{second:02}");
            }
            Some('R') => {
                let _ = write!(out, "{hour:02}:{minute:02}");
            }
            Some('c') => {
                let _ = write!(
                    out,
                    "{} {} {day:>2} {hour:02}:{minute:02}:{second:02} {year}",
                    &day_name[..3],
                    &month_name[..3]
                );
            }
            Some('z') | Some('Z') => {}
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, msgs: &[ChatMessage]) -> Result<String> {
        ChatTemplate::new(src)?.render(msgs, true, &[("bos_token".into(), "<s>".into())])
    }

    fn user(text: &str) -> Vec<ChatMessage> {
        vec![ChatMessage::new("user", text)]
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\n";
        assert_eq!(render(src, &user("hi")).unwrap(), "[hi]\n");
    }

    #[test]
    fn python_str_of_values() {
        let src = "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 1e16 }}|{{ 0.0001 }}|{{ 1e-5 }}|{{ [1, 'a', none] }}|{{ {'k': false} }}|{{ undefined_var }}";
        assert_eq!(
            render(src, &user("x")).unwrap(),
            "None|True|1.0|1e+16|0.0001|1e-05|[1, 'a', None]|{'k': False}|"
        );
    }

    #[test]
    fn python_repr_details() {
        // Expected strings produced by transformers' render_jinja_template (jinja2 3.1.6).
        let src = "{{ ('a',) }}|{{ 'it\\'s' }}|{{ ['it\\'s', 'x\"y'] }}|{{ 3 / 2 }}|{{ 4 / 2 }}|{{ 7 // 2 }}|{{ tools }}|{{ documents is none }}|{{ messages[0] }}";
        assert_eq!(
            render(src, &user("x")).unwrap(),
            "('a',)|it's|[\"it's\", 'x\"y']|1.5|2.0|3|None|True|{'role': 'user', 'content': 'x'}"
        );
    }

    #[test]
    fn tojson_matches_json_dumps() {
        let src = "{{ messages[0] | tojson }}|{{ {'a': [1, 2.5], 'b': '<é>'} | tojson }}|{{ [1] | tojson(indent=2) }}|{{ {'z': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ {'a': 1} | tojson(separators=(',', ':')) }}";
        assert_eq!(
            render(src, &user("q\"\n")).unwrap(),
            "{\"role\": \"user\", \"content\": \"q\\\"\\n\"}|{\"a\": [1, 2.5], \"b\": \"<é>\"}|[\n  1\n]|{\"a\": 2, \"z\": 1}|\"\\u00e9\"|{\"a\":1}"
        );
    }

    #[test]
    fn message_missing_keys_are_undefined_and_pycompat_methods_work() {
        let src = "{% for m in messages %}{{ m.reasoning_content is defined }} {{ m.content.strip().startswith('a') }} {{ m.content.split('</think>')[-1].lstrip('\\n') }} {{ m.items() | list | length }}{% endfor %}";
        assert_eq!(
            render(src, &user(" ab</think>\n\nc ")).unwrap(),
            "False True c  2"
        );
    }

    #[test]
    fn raise_exception_is_a_chat_template_error() {
        let err = render("{{ raise_exception('roles must alternate') }}", &user("x")).unwrap_err();
        match err {
            Error::ChatTemplate(msg) => assert!(msg.contains("roles must alternate"), "{msg}"),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn syntax_error_is_reported_at_compile_time() {
        assert!(matches!(
            ChatTemplate::new("{% if %}"),
            Err(Error::ChatTemplate(_))
        ));
    }

    #[test]
    fn generation_tags_render_their_body() {
        let src = "{% for m in messages %}{%- generation -%} <{{ m.content }}> {%- endgeneration %}{% endfor %}";
        assert_eq!(render(src, &user("x")).unwrap(), "<x>");
    }

    #[test]
    fn loop_controls_and_namespace() {
        let src = "{% set ns = namespace(n=0) %}{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}";
        assert_eq!(render(src, &user("x")).unwrap(), "3");
    }

    #[test]
    fn empty_conversation_is_rejected() {
        let t = ChatTemplate::new("x").unwrap();
        assert!(matches!(t.render(&[], false, &[]), Err(Error::Input(_))));
    }

    #[test]
    fn strftime_known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        let t = 1_721_999_109;
        assert_eq!(strftime_utc("%d %b %Y", t, 0), "26 Jul 2024");
        assert_eq!(
            strftime_utc("%-d %B %Y, %A %H:%M:%S %p %j %%", t, 0),
            "26 July 2024, Friday 13:05:09 PM 208 %"
        );
        assert_eq!(
            strftime_utc("%Y-%m-%d %a", 951_782_400, 0),
            "2000-02-29 Tue"
        );
        assert_eq!(strftime_utc("%Y-%m-%d", 0, 0), "1970-01-01");
    }

    #[test]
    fn python_float_repr() {
        let f = |x: f64| {
            let mut s = String::new();
            py_float(&mut s, x, false);
            s
        };
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(-2.5), "-2.5");
        assert_eq!(f(123456789012345.0), "123456789012345.0");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1.5e-7), "1.5e-07");
        assert_eq!(f(0.00012), "0.00012");
        assert_eq!(f(-0.0), "-0.0");
    }
}
