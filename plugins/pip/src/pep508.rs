//! PEP 508 dependency specifiers, as far as checking installed
//! distributions needs them: `name [extras] specifiers ; marker` (or `name
//! @ url ; marker`), and markers evaluated the way `packaging` evaluates them.
//!
//! Written here rather than taken from `pep508_rs`: that crate (with its
//! regex, URL and IDNA tables) made up 1.5 MB of a 2 MB component, and a
//! debug build of caulk needs about 40 s to compile such a component on
//! first use.
//!
//! Marker semantics (packaging's `_eval_op`): both sides are resolved to
//! strings; when `OP RHS` parses as a PEP 440 specifier and the left side as
//! a version, the specifier decides; otherwise `==`, `!=` and the ordering
//! operators compare strings, `in` and `not in` test substrings.

use std::fmt;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifier, VersionSpecifiers};

use crate::name::normalise;

/// Marker variables PEP 508 defines.
pub const VARIABLES: &[&str] = &[
    "implementation_name",
    "implementation_version",
    "os_name",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_full_version",
    "python_version",
    "sys_platform",
];

/// The values of the marker variables for one interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerEnv {
    values: Vec<(&'static str, String)>,
}

impl MarkerEnv {
    /// From `(variable, value)` pairs; `None` when a variable is missing or
    /// a version variable is not a version.
    pub fn new(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let mut values = Vec::with_capacity(VARIABLES.len());
        for var in VARIABLES {
            let value = get(var)?;
            if var.ends_with("_version") && *var != "platform_version" && value.parse::<Version>().is_err() {
                return None;
            }
            values.push((*var, value));
        }
        Some(Self { values })
    }

    pub fn get(&self, var: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| *k == var).map(|(_, v)| v.as_str())
    }
}

/// A comparison operator of a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Compatible,
    Arbitrary,
    In,
    NotIn,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Compatible => "~=",
            Self::Arbitrary => "===",
            Self::In => "in",
            Self::NotIn => "not in",
        }
    }
}

/// One side of a marker comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Var(String),
    Text(String),
}

/// A parsed marker expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    And(Box<Marker>, Box<Marker>),
    Or(Box<Marker>, Box<Marker>),
    Compare(Value, Op, Value),
}

impl Marker {
    /// Whether the marker holds in `env` with `extras` requested. With no
    /// environment known, a comparison of an environment variable is
    /// unknown, and an unknown result counts as holding: only what is
    /// certainly false (an `extra` nobody asked for) is left out.
    pub fn evaluate(&self, env: Option<&MarkerEnv>, extras: &[String]) -> bool {
        self.eval(env, extras).unwrap_or(true)
    }

    fn eval(&self, env: Option<&MarkerEnv>, extras: &[String]) -> Option<bool> {
        match self {
            Self::And(a, b) => match (a.eval(env, extras), b.eval(env, extras)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Self::Or(a, b) => match (a.eval(env, extras), b.eval(env, extras)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Self::Compare(lhs, op, rhs) => {
                if let (Value::Var(v), Value::Text(t)) | (Value::Text(t), Value::Var(v)) = (lhs, rhs)
                    && v == "extra"
                {
                    let wanted = normalise(t);
                    let asked = extras.iter().any(|e| normalise(e) == wanted);
                    return match op {
                        Op::Eq | Op::Arbitrary => Some(asked),
                        Op::Ne => Some(!asked),
                        _ => Some(false),
                    };
                }
                let resolve = |value: &Value| -> Option<String> {
                    match value {
                        Value::Text(t) => Some(t.clone()),
                        Value::Var(v) => env.and_then(|e| e.get(v)).map(str::to_owned),
                    }
                };
                Some(compare(&resolve(lhs)?, *op, &resolve(rhs)?))
            }
        }
    }
}

fn compare(lhs: &str, op: Op, rhs: &str) -> bool {
    if !matches!(op, Op::In | Op::NotIn | Op::Arbitrary)
        && let Ok(spec) = VersionSpecifier::from_str(&format!("{}{rhs}", op.text()))
        && let Ok(version) = lhs.parse::<Version>()
    {
        return spec.contains(&version);
    }
    match op {
        Op::Eq | Op::Arbitrary => lhs == rhs,
        Op::Ne => lhs != rhs,
        Op::Lt => lhs < rhs,
        Op::Le => lhs <= rhs,
        Op::Gt => lhs > rhs,
        Op::Ge => lhs >= rhs,
        Op::In => rhs.contains(lhs),
        Op::NotIn => !rhs.contains(lhs),
        Op::Compatible => false,
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = |v: &Value| match v {
            Value::Var(v) => v.clone(),
            Value::Text(t) => format!("{t:?}"),
        };
        match self {
            Self::And(a, b) => write!(f, "({a} and {b})"),
            Self::Or(a, b) => write!(f, "({a} or {b})"),
            Self::Compare(l, op, r) => write!(f, "{} {} {}", value(l), op.text(), value(r)),
        }
    }
}

/// A dependency specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The name as written.
    pub name: String,
    pub extras: Vec<String>,
    /// Version specifiers; `None` for none (any version) or a URL.
    pub specifiers: Option<VersionSpecifiers>,
    /// `name @ URL`.
    pub url: Option<String>,
    pub marker: Option<Marker>,
}

impl Requirement {
    /// PEP 503 form of the name.
    pub fn normal(&self) -> String {
        normalise(&self.name)
    }

    /// Whether the requirement applies in `env` with no extras requested
    /// (see [`Marker::evaluate`] for an unknown environment).
    pub fn applies(&self, env: Option<&MarkerEnv>) -> bool {
        self.marker.as_ref().is_none_or(|m| m.evaluate(env, &[]))
    }

    /// Whether `version` meets the specifiers (a URL or no specifier: any).
    pub fn allows(&self, version: &Version) -> bool {
        self.specifiers.as_ref().is_none_or(|s| s.contains(version))
    }

    /// `urllib3<1.27,>=1.21.1`: name and specifiers, sorted as text the way
    /// `pip check` prints them.
    pub fn spelt(&self) -> String {
        if let Some(url) = &self.url {
            return format!("{} @ {url}", self.name);
        }
        let mut parts: Vec<String> =
            self.specifiers.iter().flat_map(|s| s.iter()).map(ToString::to_string).collect();
        parts.sort();
        format!("{}{}", self.name, parts.join(","))
    }
}

/// Why a specifier does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

fn err<T>(text: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(text.into()))
}

impl FromStr for Requirement {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (body, marker) = split_marker(text);
        let marker = match marker {
            Some(m) => Some(parse_marker(m)?),
            None => None,
        };
        let body = body.trim();
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(body.len());
        let name = &body[..name_end];
        if name.parse::<crate::name::DistName>().is_err() {
            return err(format!("{name:?} is not a distribution name"));
        }
        let mut rest = body[name_end..].trim_start();
        let mut extras = Vec::new();
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else { return err("an unclosed `[`") };
            extras = after[..close]
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
            rest = after[close + 1..].trim_start();
        }
        let (specifiers, url) = if let Some(url) = rest.strip_prefix('@') {
            (None, Some(url.trim().to_owned()))
        } else {
            let spec = rest.trim();
            let spec = spec.strip_prefix('(').and_then(|s| s.strip_suffix(')')).unwrap_or(spec).trim();
            if spec.is_empty() {
                (None, None)
            } else {
                match VersionSpecifiers::from_str(spec) {
                    Ok(s) => (Some(s), None),
                    Err(e) => return err(format!("specifiers {spec:?}: {e}")),
                }
            }
        };
        Ok(Self { name: name.to_owned(), extras, specifiers, url, marker })
    }
}

/// Splits at the first `;` outside quotes (a URL may hold `;` only before
/// whitespace, which PEP 508 requires ahead of the marker after a URL).
fn split_marker(text: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                let before = &text[..i];
                if before.contains('@') && !before.ends_with(char::is_whitespace) {
                    continue;
                }
                return (before, Some(&text[i + 1..]));
            }
            _ => {}
        }
    }
    (text, None)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
    Text(String),
    Op(Op),
}

fn tokens(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '\'' | '"' => {
                let Some(len) = chars[i + 1..].iter().position(|x| *x == c) else {
                    return err("an unclosed quote in a marker");
                };
                out.push(Token::Text(chars[i + 1..i + 1 + len].iter().collect()));
                i += len + 2;
            }
            '=' | '!' | '<' | '>' | '~' => {
                let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
                let (op, len) = if rest.starts_with("===") {
                    (Op::Arbitrary, 3)
                } else if rest.starts_with("==") {
                    (Op::Eq, 2)
                } else if rest.starts_with("!=") {
                    (Op::Ne, 2)
                } else if rest.starts_with("<=") {
                    (Op::Le, 2)
                } else if rest.starts_with(">=") {
                    (Op::Ge, 2)
                } else if rest.starts_with("~=") {
                    (Op::Compatible, 2)
                } else if c == '<' {
                    (Op::Lt, 1)
                } else if c == '>' {
                    (Op::Gt, 1)
                } else {
                    return err(format!("{rest:?} is not a marker operator"));
                };
                out.push(Token::Op(op));
                i += len;
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                let len = chars[i..]
                    .iter()
                    .position(|x| !(x.is_ascii_alphanumeric() || *x == '_' || *x == '.'))
                    .unwrap_or(chars.len() - i);
                let word: String = chars[i..i + len].iter().collect();
                i += len;
                match word.as_str() {
                    "in" => out.push(Token::Op(Op::In)),
                    "not" => {
                        // `not in`
                        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                            i += 1;
                        }
                        if chars.get(i..i + 2) != Some(&['i', 'n']) {
                            return err("`not` without `in` in a marker");
                        }
                        i += 2;
                        out.push(Token::Op(Op::NotIn));
                    }
                    _ => out.push(Token::Word(word)),
                }
            }
            other => return err(format!("{other:?} in a marker")),
        }
    }
    Ok(out)
}

/// Parses a marker expression.
pub fn parse_marker(text: &str) -> Result<Marker, ParseError> {
    let tokens = tokens(text)?;
    let mut pos = 0;
    let marker = parse_or(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return err(format!("unexpected {:?} in marker {text:?}", tokens[pos]));
    }
    Ok(marker)
}

fn parse_or(tokens: &[Token], pos: &mut usize) -> Result<Marker, ParseError> {
    let mut left = parse_and(tokens, pos)?;
    while tokens.get(*pos) == Some(&Token::Word("or".into())) {
        *pos += 1;
        left = Marker::Or(Box::new(left), Box::new(parse_and(tokens, pos)?));
    }
    Ok(left)
}

fn parse_and(tokens: &[Token], pos: &mut usize) -> Result<Marker, ParseError> {
    let mut left = parse_atom(tokens, pos)?;
    while tokens.get(*pos) == Some(&Token::Word("and".into())) {
        *pos += 1;
        left = Marker::And(Box::new(left), Box::new(parse_atom(tokens, pos)?));
    }
    Ok(left)
}

fn parse_atom(tokens: &[Token], pos: &mut usize) -> Result<Marker, ParseError> {
    if tokens.get(*pos) == Some(&Token::Open) {
        *pos += 1;
        let inner = parse_or(tokens, pos)?;
        if tokens.get(*pos) != Some(&Token::Close) {
            return err("an unclosed `(` in a marker");
        }
        *pos += 1;
        return Ok(inner);
    }
    let lhs = parse_value(tokens, pos)?;
    let Some(Token::Op(op)) = tokens.get(*pos) else { return err("a marker comparison without an operator") };
    *pos += 1;
    let rhs = parse_value(tokens, pos)?;
    Ok(Marker::Compare(lhs, *op, rhs))
}

fn parse_value(tokens: &[Token], pos: &mut usize) -> Result<Value, ParseError> {
    let value = match tokens.get(*pos) {
        Some(Token::Text(t)) => Value::Text(t.clone()),
        Some(Token::Word(w)) if VARIABLES.contains(&w.as_str()) || w == "extra" => Value::Var(w.clone()),
        // Pre-PEP 508 spellings pip's `packaging` once accepted.
        Some(Token::Word(w)) => match w.as_str() {
            "os.name" => Value::Var("os_name".into()),
            "sys.platform" => Value::Var("sys_platform".into()),
            "platform.version" => Value::Var("platform_version".into()),
            "platform.machine" => Value::Var("platform_machine".into()),
            "platform.python_implementation" | "python_implementation" => {
                Value::Var("platform_python_implementation".into())
            }
            other => return err(format!("{other:?} is not a marker variable")),
        },
        other => return err(format!("expected a marker value, found {other:?}")),
    };
    *pos += 1;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> MarkerEnv {
        MarkerEnv::new(|k| {
            Some(
                match k {
                    "implementation_name" => "cpython",
                    "implementation_version" | "python_full_version" => "3.11.2",
                    "os_name" => "posix",
                    "platform_machine" => "x86_64",
                    "platform_python_implementation" => "CPython",
                    "platform_release" => "6.1.0",
                    "platform_system" => "Linux",
                    "platform_version" => "#1 SMP",
                    "python_version" => "3.11",
                    "sys_platform" => "linux",
                    _ => return None,
                }
                .to_owned(),
            )
        })
        .unwrap()
    }

    fn holds(marker: &str) -> bool {
        parse_marker(marker).unwrap().evaluate(Some(&env()), &[])
    }

    #[test]
    fn requirements() {
        let r: Requirement = "urllib3 (<1.27,>=1.21.1)".parse().unwrap();
        assert_eq!((r.normal(), r.spelt()), ("urllib3".into(), "urllib3<1.27,>=1.21.1".into()));
        assert!(r.allows(&"1.26.5".parse().unwrap()) && !r.allows(&"2.0.7".parse().unwrap()));
        let r: Requirement = "PySocks!=1.5.7,>=1.5.6; extra == 'socks'".parse().unwrap();
        assert!(!r.applies(Some(&env())) && !r.applies(None));
        let r: Requirement =
            "Brotli[ffi] >= 1.0.9 ; platform_python_implementation == \"CPython\" and extra == 'brotli'"
                .parse()
                .unwrap();
        assert_eq!(r.extras, ["ffi"]);
        assert!(!r.applies(Some(&env())));
        let r: Requirement =
            "pip @ https://example.org/pip-24.0-py3-none-any.whl ; python_version >= \"3.8\""
                .parse()
                .unwrap();
        assert_eq!(r.url.as_deref(), Some("https://example.org/pip-24.0-py3-none-any.whl"));
        assert!(r.allows(&"1".parse().unwrap()));
        let r: Requirement = "typing-extensions>=4.0; python_version < '3.11'".parse().unwrap();
        assert!(!r.applies(Some(&env())));
        assert!(r.applies(None), "unknown environment: it may apply");
        for bad in ["", "-r x", "a (>=1", "a ; python_version >", "a ; foo == '1'", "a >= one"] {
            assert!(bad.parse::<Requirement>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn markers_as_packaging_evaluates_them() {
        assert!(holds("python_version >= '3.8' and sys_platform == 'linux'"));
        assert!(holds("python_version < '3.8' or os_name == 'posix'"));
        assert!(!holds("(python_version < '3.8' or os_name == 'nt') and sys_platform == 'linux'"));
        assert!(holds("python_full_version ~= '3.11.0'"));
        assert!(holds("'linux' in sys_platform"));
        assert!(holds("platform_machine not in 'arm64 aarch64'"));
        assert!(holds("'3.12' > python_version"));
        assert!(!holds("implementation_name == 'pypy'"));
        assert!(holds("platform_release >= '5'"), "not a version: compared as text");
        assert!(holds("sys.platform == 'linux'"));
        let m = parse_marker("extra == 'Socks'").unwrap();
        assert!(m.evaluate(Some(&env()), &["socks".into()]));
    }
}
