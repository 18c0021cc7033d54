//! Label selectors: a port of `Parse` in k8s.io/apimachinery/pkg/labels/selector.go (its
//! lexer, its parser and `NewRequirement`'s validation), so the grammar, its corner cases
//! (`x in ()`, `x in (a,,)`, `in` as a key or value, `!x=a` failing at the `=`) and every
//! error text are Kubernetes'.
//!
//! ```text
//! <selector>    ::= <requirement> | <requirement> "," <selector>
//! <requirement> ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
//! ```

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::{aggregate, invalid, label_key_errors, label_value_errors, scalar_text, SelectorError};

/// What Go prints where an operator was expected: `strings.Join(binaryOperators, ", ")` over
/// the `selection.Operator` strings (`>` and `<` are spelled `gt` and `lt` there).
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// Go's `(*field.Path)(nil).String()`: `Parse` is called without a path, so a key error is
/// reported against `<nil>`, which is what kube-apiserver's messages really say.
const NIL_PATH: &str = "<nil>";

/// A lexer token (Go's `Token`; its `ErrorToken` cannot occur, since every special character
/// is a token on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Go's byte-wise lexer. Tokens only ever end at ASCII bytes, so every literal is a valid
/// `&str` slice of the input, multi-byte characters included. Go's `read` yields 0 both at
/// the end and for a NUL byte, so a NUL ends the selector where a token could start and is
/// dropped where it ends a token; both quirks are kept. Once the end is reached the lexer
/// stays there: Go stops scanning at the first end token, whatever follows a NUL.
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    finished: bool,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            finished: false,
        }
    }

    fn next_token(&mut self) -> (Token, &'a str) {
        if self.finished {
            return (Token::EndOfString, "");
        }
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && is_whitespace(bytes[self.pos]) {
            self.pos += 1;
        }
        match bytes.get(self.pos) {
            None => {
                self.finished = true;
                (Token::EndOfString, "")
            }
            Some(0) => {
                self.pos += 1;
                self.finished = true;
                (Token::EndOfString, "")
            }
            Some(&b) if is_special(b) => self.scan_special(),
            Some(_) => self.scan_identifier(),
        }
    }

    /// Go reads the byte after a token; a NUL there is consumed rather than put back.
    fn skip_nul(&mut self) {
        if self.src.as_bytes().get(self.pos) == Some(&0) {
            self.pos += 1;
        }
    }

    fn scan_identifier(&mut self) -> (Token, &'a str) {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        while let Some(&b) = bytes.get(self.pos) {
            if b == 0 || is_special(b) || is_whitespace(b) {
                break;
            }
            self.pos += 1;
        }
        let literal = &self.src[start..self.pos];
        self.skip_nul();
        let token = match literal {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (token, literal)
    }

    /// Go scans the longest run of special characters that is a token; the only two-character
    /// tokens are `==` and `!=`, so `===` is `==` then `=`, and `!!` is `!` then `!`.
    fn scan_special(&mut self) -> (Token, &'a str) {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let first = bytes[start];
        self.pos += 1;
        let mut token = match first {
            b'=' => Token::Equals,
            b'!' => Token::DoesNotExist,
            b'(' => Token::OpenPar,
            b')' => Token::ClosedPar,
            b',' => Token::Comma,
            b'>' => Token::GreaterThan,
            // `is_special` admits only these seven bytes; the last is '<'.
            _ => Token::LessThan,
        };
        if matches!(first, b'=' | b'!') && bytes.get(self.pos) == Some(&b'=') {
            token = if first == b'=' {
                Token::DoubleEquals
            } else {
                Token::NotEquals
            };
            self.pos += 1;
        }
        let literal = &self.src[start..self.pos];
        self.skip_nul();
        (token, literal)
    }
}

/// Where the parser is: among values, `in` and `notin` are plain identifiers (`x in (in)`,
/// `notin=in`), as Go's `ParserContext` makes them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn in_context(item: (Token, &str), context: Context) -> (Token, &str) {
    match item {
        (Token::In | Token::NotIn, literal) if context == Context::Values => {
            (Token::Identifier, literal)
        }
        other => other,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// Go's parser over a one-token window. Go lexes the whole input into a slice first; the
/// grammar never looks further ahead than one token, so lexing on demand gives the same
/// result without holding a token for every comma of a hostile megabyte.
struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Token, &'a str)>,
}

impl<'a> Parser<'a> {
    fn lookahead(&mut self, context: Context) -> (Token, &'a str) {
        let item = match self.peeked {
            Some(item) => item,
            None => {
                let item = self.lexer.next_token();
                self.peeked = Some(item);
                item
            }
        };
        in_context(item, context)
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = match self.peeked.take() {
            Some(item) => item,
            None => self.lexer.next_token(),
        };
        in_context(item, context)
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(SelectorError::LabelRequirement)?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(SelectorError::LabelSyntax(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::LabelSyntax(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::LabelSyntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    /// One requirement; the error is the text Go wraps in `unable to parse requirement: `.
    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return new_requirement(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, operator, values)
    }

    /// The key, and the operator when it is unary. After `!` the requirement is `DoesNotExist`
    /// whatever follows, which is why Go rejects `!x=a` at the `=`, not at the `!`.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        let errors = label_key_errors(literal);
        if !errors.is_empty() {
            return Err(invalid(NIL_PATH, literal, &errors.join("; ")));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    /// `( ... )`. An empty set `()` is the set holding the empty string, as in Go.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            // Go's text really lacks the comma here.
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                // The list returns only with ')' next, so this holds; Go checks it anyway.
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    /// A comma-separated list of possibly empty identifiers, up to (not including) the `)`.
    /// Empty elements (`(,a)`, `(a,,b)`, `(a,)`) add the empty string. The result is sorted
    /// and deduplicated, as Go's `sets.String.List()` passes it to `NewRequirement`.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut set: BTreeSet<&'a str> = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    set.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => break,
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert("");
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        set.insert("");
                        break;
                    }
                    if next == Token::Comma {
                        set.insert("");
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
        Ok(set.into_iter().map(str::to_owned).collect())
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end is "".
    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal.to_owned()])
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

/// Go's `NewRequirement` as the parser reaches it: the key is already validated and the value
/// count is already right for the operator, so what remains is the integer of `>`/`<` and the
/// label-value syntax of every value. Errors are aggregated as Go's `ToAggregate` does.
fn new_requirement(
    key: &str,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, String> {
    let mut errors = Vec::new();
    let mut bound = 0;
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, value) in values.iter().enumerate() {
            // Go's strconv.ParseInt(v, 10, 64) and i64's FromStr accept the same texts:
            // an optional sign and decimal digits, within range.
            match value.parse::<i64>() {
                Ok(n) => bound = n,
                Err(_) => errors.push(invalid(
                    &format!("values[{i}]"),
                    value,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                )),
            }
        }
    }
    for (i, value) in values.iter().enumerate() {
        let value_errors = label_value_errors(value);
        if !value_errors.is_empty() {
            errors.push(invalid(
                &format!("values[{i}][{key}]"),
                value,
                &value_errors.join("; "),
            ));
        }
    }
    match aggregate(errors) {
        Some(message) => Err(message),
        None => Ok(Requirement {
            key: key.to_owned(),
            operator,
            values,
            bound,
        }),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and deduplicated (see `parse_identifiers_list`), which also lets a large
    /// `in (...)` set be binary-searched for every object of a list.
    values: Vec<String>,
    /// The integer of a `>`/`<` requirement.
    bound: i64,
}

impl Requirement {
    fn has_value(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }

    /// Go's `Requirement.Matches`: `notin` and `!=` match an absent key, `in` and `=` do not;
    /// `>`/`<` need a present key whose value is an integer.
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|m| m.get(self.key.as_str()))
            .map(scalar_text);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(&v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(&v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => match value.map(|v| v.parse::<i64>()) {
                Some(Ok(n)) if self.operator == Operator::GreaterThan => n > self.bound,
                Some(Ok(n)) => n < self.bound,
                _ => false,
            },
        }
    }
}

/// Go's `Requirement.String`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let operator = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(operator)?;
        for (i, value) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(value)?;
        }
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements, sorted by key as Go sorts them.
/// `Default` is the empty selector, which matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses `text` with the grammar and validation of Go's `labels.Parse`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            lexer: Lexer::new(text),
            peeked: None,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Whether an object with these `metadata.labels` (`None` when it has none) is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Go's `RequiresExactMatch`: the value the first requirement on `key` pins it to, if that
    /// requirement is `=`, `==` or a one-value `in`.
    pub fn exact(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => {
                Some(value.as_str())
            }
            _ => None,
        }
    }
}

/// Go's `Selector.String`: the canonical text, requirements by key, values sorted.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
