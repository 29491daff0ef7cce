//! Decoding JSON objects the way Go's `encoding/json` does: a struct field matches a key
//! exactly or, failing that, case-insensitively; unknown keys are ignored.
//!
//! This module owns the Go-compatibility layer every format in this crate (and the backend
//! option parsers elsewhere) builds on:
//!
//! - **Key matching** ([`fold_eq`], [`get`], [`Members::get`]): Go first looks for a field whose
//!   name equals the key exactly, otherwise for one whose name is equal under Unicode simple
//!   case folding. Besides ASCII case, this makes `K` (U+212A KELVIN SIGN) match `k` and `ſ`
//!   (U+017F LATIN SMALL LETTER LONG S) match `s`, exactly as Go does.
//! - **Duplicate keys**: Go decodes members in input order, so the *last* member that maps to a
//!   field wins. [`Members`] keeps input order and reproduces this; a `serde_json::Map` has lost
//!   the order, so [`get`] prefers an exact key and otherwise takes the last case-insensitive
//!   match in map order (an approximation that only matters for objects with duplicate keys).
//! - **`null`**: for plain Go types (`bool`, integers, `string`) a JSON `null` leaves the field
//!   unchanged, so every typed getter returns `Ok(None)` for both "absent" and `null`. Types with
//!   their own `UnmarshalJSON` (Flannel's IP types, `json.RawMessage`) *do* see the `null`; the
//!   callers in this crate handle that per field.
//! - **Errors**: type mismatches produce Go's text, e.g.
//!   `json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint`
//!   ([`GoJsonError::FieldType`]). Syntax errors use serde_json's wording, except that a
//!   truncated document reports Go's `unexpected end of JSON input`.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON document could not be decoded into a Go-shaped value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GoJsonError {
    /// The text is not JSON (`unexpected end of JSON input` for truncated input, serde_json's
    /// description otherwise).
    #[error("{0}")]
    Syntax(String),
    /// A struct field got a JSON value of the wrong kind or range (Go `*json.UnmarshalTypeError`
    /// with struct context).
    #[error(
        "json: cannot unmarshal {value} into Go struct field {strukt}.{field} of type {go_type}"
    )]
    FieldType {
        /// What was found: `string`, `number`, `number -1`, `bool`, `object`, `array`.
        value: String,
        /// The Go struct's type name (`Config`, `LeaseAttrs`; empty for anonymous structs).
        strukt: String,
        /// The Go field name.
        field: String,
        /// The Go type of the field (`uint`, `bool`, `string`, …).
        go_type: String,
    },
    /// The document as a whole has the wrong kind (e.g. an array where an object is needed).
    #[error("json: cannot unmarshal {value} into Go value of type {go_type}")]
    ValueType {
        /// What was found: `string`, `number`, `bool`, `array`, …
        value: String,
        /// The Go type that was being decoded (`subnet.Config`, `lease.LeaseAttrs`, …).
        go_type: String,
    },
}

impl GoJsonError {
    /// Converts a serde_json parse error into Go's wording where the two can be matched.
    pub fn from_serde(err: &serde_json::Error) -> GoJsonError {
        if err.classify() == serde_json::error::Category::Eof {
            GoJsonError::Syntax("unexpected end of JSON input".to_string())
        } else {
            GoJsonError::Syntax(err.to_string())
        }
    }
}

/// Names a Go struct field for error messages: `Go struct field {strukt}.{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef<'a> {
    /// The Go struct type name (`Config`); empty for an anonymous struct.
    pub strukt: &'a str,
    /// The Go field name (`SubnetLen`); also the JSON key looked up.
    pub name: &'a str,
}

impl<'a> FieldRef<'a> {
    /// A field `name` of Go struct type `strukt`.
    pub const fn new(strukt: &'a str, name: &'a str) -> Self {
        FieldRef { strukt, name }
    }

    fn type_error(&self, value: impl Into<String>, go_type: &str) -> GoJsonError {
        GoJsonError::FieldType {
            value: value.into(),
            strukt: self.strukt.to_string(),
            field: self.name.to_string(),
            go_type: go_type.to_string(),
        }
    }
}

/// The kind of a JSON value, named as Go names it in `UnmarshalTypeError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an object
    Object,
    /// an array
    Array,
}

impl Kind {
    /// Go's word for this kind in error messages (`string`, `number`, `bool`, `object`, …).
    pub fn go_name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "bool",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Object => "object",
            Kind::Array => "array",
        }
    }

    /// The kind of a parsed value.
    pub fn of_value(v: &Value) -> Kind {
        match v {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    /// The kind of a valid raw JSON text (decided by its first non-space character).
    pub fn of_raw(raw: &str) -> Kind {
        match raw.trim_start().as_bytes().first() {
            Some(b'n') => Kind::Null,
            Some(b't') | Some(b'f') => Kind::Bool,
            Some(b'"') => Kind::String,
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            _ => Kind::Number,
        }
    }
}

/// Go's integer field types, for range checks and error texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoInt {
    /// `int` (64-bit on every platform Flannel supports)
    Int,
    /// `int8`
    Int8,
    /// `int16`
    Int16,
    /// `int32`
    Int32,
    /// `int64`
    Int64,
    /// `uint`
    Uint,
    /// `uint8`
    Uint8,
    /// `uint16`
    Uint16,
    /// `uint32`
    Uint32,
    /// `uint64`
    Uint64,
}

impl GoInt {
    /// The Go type name.
    pub fn name(self) -> &'static str {
        match self {
            GoInt::Int => "int",
            GoInt::Int8 => "int8",
            GoInt::Int16 => "int16",
            GoInt::Int32 => "int32",
            GoInt::Int64 => "int64",
            GoInt::Uint => "uint",
            GoInt::Uint8 => "uint8",
            GoInt::Uint16 => "uint16",
            GoInt::Uint32 => "uint32",
            GoInt::Uint64 => "uint64",
        }
    }

    fn signed(self) -> bool {
        matches!(
            self,
            GoInt::Int | GoInt::Int8 | GoInt::Int16 | GoInt::Int32 | GoInt::Int64
        )
    }

    /// Inclusive range of the type.
    fn range(self) -> (i128, i128) {
        match self {
            GoInt::Int | GoInt::Int64 => (i64::MIN.into(), i64::MAX.into()),
            GoInt::Int8 => (i8::MIN.into(), i8::MAX.into()),
            GoInt::Int16 => (i16::MIN.into(), i16::MAX.into()),
            GoInt::Int32 => (i32::MIN.into(), i32::MAX.into()),
            GoInt::Uint | GoInt::Uint64 => (0, u64::MAX.into()),
            GoInt::Uint8 => (0, u8::MAX.into()),
            GoInt::Uint16 => (0, u16::MAX.into()),
            GoInt::Uint32 => (0, u32::MAX.into()),
        }
    }
}

/// Go's case folding of one character: a representative of its simple case-folding orbit.
///
/// ASCII letters fold to upper case; U+212A KELVIN SIGN folds to `K` and U+017F LONG S to `S`
/// (the only non-ASCII characters whose fold orbit contains an ASCII letter, so JSON keys
/// matching ASCII Go field names are compared exactly as Go does). Other characters fold to
/// their lower case when lower and upper case map one-to-one and back (`É` ~ `é`), otherwise
/// to themselves (`ı`, `İ` stay apart from `i`, as in Go); this approximates Go's
/// `unicode.SimpleFold` orbits, which only matters for non-ASCII field names.
fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        match (it.next(), it.next()) {
            (Some(x), None) => Some(x),
            _ => None,
        }
    }
    match c {
        '\u{212A}' => 'K',
        '\u{017F}' => 'S',
        _ => {
            let Some(lower) = single(c.to_lowercase()) else {
                return c;
            };
            let upper = single(lower.to_uppercase());
            let back = upper.and_then(|u| single(u.to_lowercase()));
            if back == Some(lower) && (lower == c || upper == Some(c)) {
                lower
            } else {
                c
            }
        }
    }
}

/// Whether a JSON key and a Go field name are equal under Go's case folding.
pub fn fold_eq(key: &str, field: &str) -> bool {
    let mut a = key.chars().map(fold_char);
    let mut b = field.chars().map(fold_char);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Which of `fields` a JSON key decodes into, the way Go picks: an exact name match first,
/// otherwise the first field (in declaration order) that matches case-insensitively.
pub fn match_field(fields: &[&str], key: &str) -> Option<usize> {
    fields
        .iter()
        .position(|f| *f == key)
        .or_else(|| fields.iter().position(|f| fold_eq(key, f)))
}

/// Looks up field `name` in a decoded object: the member with exactly that key, otherwise the
/// (last, in map order) member whose key matches case-insensitively.
pub fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .filter(|(k, _)| fold_eq(k, name))
            .map(|(_, v)| v)
            .next_back()
    })
}

/// Decodes field `field` of `obj` as a Go `bool`. `Ok(None)` when absent or `null`.
pub fn get_bool(
    obj: &Map<String, Value>,
    field: FieldRef<'_>,
) -> Result<Option<bool>, GoJsonError> {
    match get(obj, field.name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(field.type_error(Kind::of_value(v).go_name(), "bool")),
    }
}

/// Decodes field `field` of `obj` as a Go `string`. `Ok(None)` when absent or `null`.
pub fn get_string(
    obj: &Map<String, Value>,
    field: FieldRef<'_>,
) -> Result<Option<String>, GoJsonError> {
    match get(obj, field.name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(field.type_error(Kind::of_value(v).go_name(), "string")),
    }
}

/// Decodes field `field` of `obj` as the Go integer type `ty` (range-checked like Go: a
/// fraction, exponent or out-of-range value gives `cannot unmarshal number 1.5 into …`).
/// `Ok(None)` when absent or `null`. Unsigned types fit in the `i128` result.
pub fn get_int(
    obj: &Map<String, Value>,
    field: FieldRef<'_>,
    ty: GoInt,
) -> Result<Option<i128>, GoJsonError> {
    match get(obj, field.name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => parse_go_int(&n.to_string(), field, ty).map(Some),
        Some(v) => Err(field.type_error(Kind::of_value(v).go_name(), ty.name())),
    }
}

/// Parses a JSON number literal into Go integer type `ty` as `strconv.ParseInt/ParseUint`
/// (base 10, no fraction or exponent) plus the field-size overflow check do.
fn parse_go_int(text: &str, field: FieldRef<'_>, ty: GoInt) -> Result<i128, GoJsonError> {
    let err = || field.type_error(format!("number {text}"), ty.name());
    let digits = if ty.signed() {
        text.strip_prefix('-').unwrap_or(text)
    } else {
        text
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: i128 = text.parse().map_err(|_| err())?;
    let (lo, hi) = ty.range();
    if n < lo || n > hi {
        return Err(err());
    }
    Ok(n)
}

/// Unquotes a raw JSON string literal the way Go does: escapes are decoded and an invalid
/// or unpaired `\uD800`–`\uDFFF` escape becomes U+FFFD instead of an error.
/// Returns `None` if `raw` is not a string literal.
pub fn unquote(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hi = read_hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    // Try to pair with a following \uDC00-\uDFFF; Go only consumes the second
                    // escape when the pair is valid.
                    let mut look = chars.clone();
                    if look.next() == Some('\\') && look.next() == Some('u') {
                        if let Some(lo) = read_hex4(&mut look) {
                            if (0xDC00..0xE000).contains(&lo) {
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                                chars = look;
                                continue;
                            }
                        }
                    }
                    out.push('\u{FFFD}');
                } else {
                    out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

fn read_hex4(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

/// Encodes `s` as a JSON string literal exactly as Go's `json.Marshal` does (HTML-safe):
/// `"` and `\` are backslash-escaped, `\b \f \n \r \t` use short escapes, other control
/// characters become `\u00XX` (lower-case hex), `<`, `>`, `&` become `\u003c`, `\u003e`,
/// `\u0026`, and U+2028/U+2029 become `\u2028`/`\u2029`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => push_u_escape(&mut out, c),
            c if u32::from(c) < 0x20 => push_u_escape(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn push_u_escape(out: &mut String, c: char) {
    out.push_str(&format!("\\u{:04x}", u32::from(c)));
}

/// Validates `text` as one JSON value and compacts it the way Go's `json.Marshal` re-encodes
/// a `json.RawMessage`: insignificant whitespace is removed, everything else (number spelling,
/// string escapes, key order, duplicate keys) is kept byte for byte, and — because Marshal
/// escapes HTML — `<`, `>`, `&`, U+2028 and U+2029 inside strings are replaced by `\u003c`,
/// `\u003e`, `\u0026`, `\u2028`, `\u2029`.
pub fn compact(text: &str) -> Result<String, GoJsonError> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| GoJsonError::from_serde(&e))?;
    let mut out = String::with_capacity(raw.get().len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.get().chars() {
        if in_string {
            match c {
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    push_u_escape(&mut out, c);
                    escaped = false;
                    continue;
                }
                _ => {}
            }
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    Ok(out)
}

/// The members of one JSON object in input order, values kept as raw JSON text — what Go's
/// decoder walks when it fills a struct.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    entries: Vec<(String, &'a RawValue)>,
}

/// What a JSON document decodes to at the top level when a Go struct is expected.
#[derive(Debug, Clone)]
pub enum TopLevel<'a> {
    /// An object: decode its members into the struct.
    Object(Members<'a>),
    /// `null`: Go leaves the struct untouched (all defaults, no error).
    Null,
}

impl<'a> Members<'a> {
    /// Parses `text` as a JSON document that Go would decode into a struct of Go type
    /// `go_type` (e.g. `subnet.Config`): an object, or `null`. Any other kind gives Go's
    /// `json: cannot unmarshal array into Go value of type subnet.Config`.
    pub fn parse(text: &'a str, go_type: &str) -> Result<TopLevel<'a>, GoJsonError> {
        let raw: &'a RawValue =
            serde_json::from_str(text).map_err(|e| GoJsonError::from_serde(&e))?;
        Self::from_raw(raw, go_type)
    }

    /// Like [`Members::parse`] for an already validated raw value.
    pub fn from_raw(raw: &'a RawValue, go_type: &str) -> Result<TopLevel<'a>, GoJsonError> {
        match Kind::of_raw(raw.get()) {
            Kind::Null => Ok(TopLevel::Null),
            Kind::Object => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let entries = de
                    .deserialize_map(MembersVisitor)
                    .map_err(|e| GoJsonError::from_serde(&e))?;
                Ok(TopLevel::Object(Members { entries }))
            }
            other => Err(GoJsonError::ValueType {
                value: other.go_name().to_string(),
                go_type: go_type.to_string(),
            }),
        }
    }

    /// The members in input order (duplicates included).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The raw value Go would end up with in field `name` when decoding into a struct whose
    /// fields do not fold-collide: the last member whose key is `name` or folds to it.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name || fold_eq(k, name))
            .map(|(_, v)| *v)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

/// Decodes a raw member value as a Go `bool` field. `Ok(None)` for `null` (field unchanged).
pub fn raw_bool(raw: &RawValue, field: FieldRef<'_>) -> Result<Option<bool>, GoJsonError> {
    match raw.get() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "null" => Ok(None),
        other => Err(field.type_error(Kind::of_raw(other).go_name(), "bool")),
    }
}

/// Decodes a raw member value as a Go integer field of type `ty`. `Ok(None)` for `null`.
pub fn raw_int(
    raw: &RawValue,
    field: FieldRef<'_>,
    ty: GoInt,
) -> Result<Option<i128>, GoJsonError> {
    match Kind::of_raw(raw.get()) {
        Kind::Null => Ok(None),
        Kind::Number => parse_go_int(raw.get(), field, ty).map(Some),
        k => Err(field.type_error(k.go_name(), ty.name())),
    }
}

/// Decodes a raw member value as a Go `string` field. `Ok(None)` for `null`.
pub fn raw_string(raw: &RawValue, field: FieldRef<'_>) -> Result<Option<String>, GoJsonError> {
    match Kind::of_raw(raw.get()) {
        Kind::Null => Ok(None),
        Kind::String => unquote(raw.get())
            .map(Some)
            .ok_or_else(|| GoJsonError::Syntax(format!("invalid string literal {}", raw.get()))),
        k => Err(field.type_error(k.go_name(), "string")),
    }
}

/// The text a Flannel `UnmarshalJSON` (IP and CIDR types) works on: the raw member text with
/// every leading and trailing `"` removed (Go `bytes.Trim(j, "\"")`). Escapes are *not*
/// decoded, and non-string values are passed through (`null` stays `null`).
pub fn trim_quotes(raw: &RawValue) -> &str {
    raw.get().trim_matches('"')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const CFG: &str = "Config";

    #[test]
    fn fold_matches_go() {
        assert!(fold_eq("network", "Network"));
        assert!(fold_eq("NETWORK", "Network"));
        assert!(fold_eq("ipv6network", "IPv6Network"));
        assert!(!fold_eq("Networks", "Network"));
        assert!(!fold_eq("Net_work", "Network"));
        // Go folds KELVIN SIGN to K and LONG S to S.
        assert!(fold_eq("networ\u{212A}", "Network"));
        assert!(fold_eq("\u{017F}ubnetLen", "SubnetLen"));
        // Dotless i / dotted I are not in the orbit of ASCII i.
        assert!(!fold_eq("\u{0131}Pv6Network", "IPv6Network"));
        assert!(!fold_eq("\u{0130}Pv6Network", "IPv6Network"));
        assert!(fold_eq("\u{C9}t\u{E9}", "\u{E9}T\u{C9}"));
    }

    #[test]
    fn match_field_prefers_exact() {
        let fields = ["foo", "Foo"];
        assert_eq!(match_field(&fields, "Foo"), Some(1));
        assert_eq!(match_field(&fields, "FOO"), Some(0));
        assert_eq!(match_field(&fields, "bar"), None);
    }

    #[test]
    fn get_exact_then_folded() {
        let v = json!({"vni": 4, "VNI": 5, "Port": 1});
        let obj = v.as_object().unwrap();
        assert_eq!(get(obj, "VNI"), Some(&json!(5)));
        assert_eq!(get(obj, "port"), Some(&json!(1)));
        assert_eq!(get(obj, "Missing"), None);
    }

    #[test]
    fn typed_getters() {
        let v = json!({"VNI": 1, "port": 8472, "DirectRouting": true, "Name": "x", "Nil": null,
                       "Neg": -1, "Frac": 1.5, "Str": "7", "Big": 70000});
        let o = v.as_object().unwrap();
        let f = |n| FieldRef::new("backendConfig", n);
        assert_eq!(get_int(o, f("VNI"), GoInt::Int).unwrap(), Some(1));
        assert_eq!(get_int(o, f("Port"), GoInt::Int).unwrap(), Some(8472));
        assert_eq!(get_bool(o, f("DirectRouting")).unwrap(), Some(true));
        assert_eq!(get_string(o, f("name")).unwrap(), Some("x".into()));
        assert_eq!(get_string(o, f("Nil")).unwrap(), None);
        assert_eq!(get_bool(o, f("Absent")).unwrap(), None);
        assert_eq!(
            get_int(o, f("Neg"), GoInt::Uint).unwrap_err().to_string(),
            "json: cannot unmarshal number -1 into Go struct field backendConfig.Neg of type uint"
        );
        assert_eq!(get_int(o, f("Neg"), GoInt::Int).unwrap(), Some(-1));
        assert_eq!(
            get_int(o, f("Frac"), GoInt::Int).unwrap_err().to_string(),
            "json: cannot unmarshal number 1.5 into Go struct field backendConfig.Frac of type int"
        );
        assert_eq!(
            get_int(o, f("Str"), GoInt::Int).unwrap_err().to_string(),
            "json: cannot unmarshal string into Go struct field backendConfig.Str of type int"
        );
        assert_eq!(
            get_int(o, f("Big"), GoInt::Uint16).unwrap_err().to_string(),
            "json: cannot unmarshal number 70000 into Go struct field backendConfig.Big of type uint16"
        );
        assert_eq!(
            get_bool(o, f("Name")).unwrap_err().to_string(),
            "json: cannot unmarshal string into Go struct field backendConfig.Name of type bool"
        );
    }

    #[test]
    fn members_keep_order_and_last_wins() {
        let text = r#"{"network":"a","Other":1,"NETWORK":"b"}"#;
        let TopLevel::Object(m) = Members::parse(text, "subnet.Config").unwrap() else {
            panic!("expected object")
        };
        assert_eq!(m.get("Network").unwrap().get(), r#""b""#);
        let keys: Vec<_> = m.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["network", "Other", "NETWORK"]);
    }

    #[test]
    fn members_top_level_kinds() {
        assert!(matches!(
            Members::parse("null", "T").unwrap(),
            TopLevel::Null
        ));
        assert_eq!(
            Members::parse("[1]", "subnet.Config")
                .unwrap_err()
                .to_string(),
            "json: cannot unmarshal array into Go value of type subnet.Config"
        );
        assert_eq!(
            Members::parse("\"x\"", "lease.LeaseAttrs")
                .unwrap_err()
                .to_string(),
            "json: cannot unmarshal string into Go value of type lease.LeaseAttrs"
        );
        assert_eq!(
            Members::parse("{\"a\":", "T").unwrap_err().to_string(),
            "unexpected end of JSON input"
        );
        assert_eq!(
            Members::parse("", "T").unwrap_err().to_string(),
            "unexpected end of JSON input"
        );
        assert!(matches!(
            Members::parse("{} x", "T").unwrap_err(),
            GoJsonError::Syntax(_)
        ));
    }

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn raw_decoders() {
        let f = FieldRef::new(CFG, "SubnetLen");
        assert_eq!(raw_int(raw("24"), f, GoInt::Uint).unwrap(), Some(24));
        assert_eq!(raw_int(raw("null"), f, GoInt::Uint).unwrap(), None);
        assert_eq!(
            raw_int(raw("\"24\""), f, GoInt::Uint)
                .unwrap_err()
                .to_string(),
            "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint"
        );
        assert_eq!(
            raw_int(raw("1e2"), f, GoInt::Uint).unwrap_err().to_string(),
            "json: cannot unmarshal number 1e2 into Go struct field Config.SubnetLen of type uint"
        );
        assert_eq!(
            raw_int(raw("18446744073709551616"), f, GoInt::Uint).unwrap_err().to_string(),
            "json: cannot unmarshal number 18446744073709551616 into Go struct field Config.SubnetLen of type uint"
        );
        assert_eq!(
            raw_int(raw("{}"), f, GoInt::Uint).unwrap_err().to_string(),
            "json: cannot unmarshal object into Go struct field Config.SubnetLen of type uint"
        );
        let b = FieldRef::new(CFG, "EnableIPv6");
        assert_eq!(raw_bool(raw("true"), b).unwrap(), Some(true));
        assert_eq!(raw_bool(raw("null"), b).unwrap(), None);
        assert_eq!(
            raw_bool(raw("1"), b).unwrap_err().to_string(),
            "json: cannot unmarshal number into Go struct field Config.EnableIPv6 of type bool"
        );
        assert_eq!(
            raw_bool(raw("[true]"), b).unwrap_err().to_string(),
            "json: cannot unmarshal array into Go struct field Config.EnableIPv6 of type bool"
        );
        let s = FieldRef::new("", "Type");
        assert_eq!(
            raw_string(raw(r#""vx\u006cAN""#), s).unwrap(),
            Some("vxlAN".into())
        );
        assert_eq!(
            raw_string(raw("false"), s).unwrap_err().to_string(),
            "json: cannot unmarshal bool into Go struct field .Type of type string"
        );
        assert_eq!(trim_quotes(raw(r#""10.0.0.0/8""#)), "10.0.0.0/8");
        assert_eq!(trim_quotes(raw("null")), "null");
    }

    #[test]
    fn unquote_like_go() {
        assert_eq!(
            unquote(r#""a\"b\\c\/d\b\f\n\r\t""#).unwrap(),
            "a\"b\\c/d\u{8}\u{c}\n\r\t"
        );
        assert_eq!(unquote(r#""\ud83d\ude00""#).unwrap(), "\u{1F600}");
        assert_eq!(unquote(r#""\ud83dx""#).unwrap(), "\u{FFFD}x");
        assert_eq!(unquote(r#""\ude00\u0041""#).unwrap(), "\u{FFFD}A");
        assert_eq!(unquote(r#""\ud83d\u0041""#).unwrap(), "\u{FFFD}A");
        assert_eq!(unquote("x"), None);
    }

    #[test]
    fn quote_like_go_marshal() {
        assert_eq!(quote("vxlan"), r#""vxlan""#);
        assert_eq!(
            quote("a\"\\<>&\u{2028}\u{2029}\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é"),
            "\"a\\\"\\\\\\u003c\\u003e\\u0026\\u2028\\u2029\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}é\""
        );
    }

    #[test]
    fn compact_like_go() {
        assert_eq!(
            compact(" { \"VNI\" : 1 ,\n\t\"VtepMAC\":\"c6:d2:32:6f:8f:44\" } ").unwrap(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
        // Spelling of numbers and escapes is kept; HTML characters are escaped.
        assert_eq!(
            compact(r#"{"a": 1.0e+2, "b": "\u0041 \/ <x> & y", "c": [ ] }"#).unwrap(),
            r#"{"a":1.0e+2,"b":"\u0041 \/ \u003cx\u003e \u0026 y","c":[]}"#
        );
        assert_eq!(
            compact("\"a\u{2028}b\u{2029}\"").unwrap(),
            r#""a\u2028b\u2029""#
        );
        // Whitespace inside strings is kept, escaped quotes do not end the string.
        assert_eq!(compact(r#"[ "a \" b" , 2 ]"#).unwrap(), r#"["a \" b",2]"#);
        assert_eq!(compact("null").unwrap(), "null");
        // Lone surrogate escapes are valid JSON for Go.
        assert_eq!(compact(r#""\ud800""#).unwrap(), r#""\ud800""#);
        assert!(compact("").is_err());
        assert!(compact("{").is_err());
        assert!(compact("{} {}").is_err());
        assert!(compact("[1,]").is_err());
        assert!(compact("01").is_err());
    }
}
