//! JSONPath in the kubectl dialect (client-go `util/jsonpath`), as attribute paths use it.
//!
//! Why not a JSONPath crate: maintained crates (jsonpath-rust and friends) implement RFC 9535,
//! whose semantics differ from kubectl's exactly where the Go operator pins behaviour down: RFC 9535
//! yields "no match" for an out-of-range index where kubectl fails with `array index out of
//! bounds`, it has no `{...}` template text, no `\.`-escaped field names, and compares filter
//! operands with different typing rules. Bridging those gaps would need a second parser to find
//! out *why* a path matched nothing, so the dialect is implemented here directly (a small
//! recursive-descent parser and a set-based evaluator).
//!
//! Supported: `{.a.b}` and `$.a.b` forms, `.field` (with `\.` escapes), `['key']` / `["key"]`,
//! `[n]` with negative indexes, slices `[start:end:step]`, `[*]` (the slice `[:]`) and `.*`,
//! recursive descent `..field`, unions `[0,2]` / `['a','b']`, and filters `[?(@.x == "y")]` with
//! `==`, `!=`, `<`, `<=`, `>`, `>=` and bare existence `[?(@.x)]`. Bounds, shapes, comparison
//! typing and union order follow client-go (`util/jsonpath` and its forked template
//! comparisons). A template's value is its first node; later blocks are evaluated for their
//! errors and not-founds. A template without blocks is literal text.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// No `{}` block: the text itself is the value.
    Literal(String),
    /// One block: its matches.
    Steps(Vec<Step>),
    /// Several nodes (text and blocks). As in client-go, the first node's value is the result,
    /// and every later block is still evaluated: its errors fail the path and a key it does
    /// not find makes the result null.
    Template(Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Steps(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Recursive(Box<Step>),
    /// A trailing `..`: the node and every list or map below it, as client-go's recursive
    /// node yields them.
    Descendants,
    Index(i64),
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
    Union(Vec<Selector>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Index(i64),
    Key(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Exists(Vec<Step>),
    Compare {
        left: Operand,
        op: CompareOp,
        right: Operand,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Vec<Step>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A path that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// A path that cannot be evaluated on an object (other than "not found", which yields null).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(String);

impl JsonPath {
    /// Parses a path. `$.a.b` is read as `{.a.b}`; text without `{}` is a literal.
    pub fn parse(path: &str) -> Result<Self, ParseError> {
        let path = path.trim();
        if let Some(rest) = path.strip_prefix('$')
            && (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
        {
            return Ok(Self {
                body: Body::Steps(Parser::new(rest).steps_to_end()?),
            });
        }
        let mut nodes = Vec::new();
        let mut rest = path;
        while let Some((open, block, close)) = find_block(rest)? {
            if open > 0 {
                nodes.push(Node::Text(rest[..open].to_owned()));
            }
            nodes.push(parse_block(block)?);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_owned()));
        }
        let body = match nodes.as_slice() {
            [] => Body::Literal(String::new()),
            [Node::Text(text)] => Body::Literal(text.clone()),
            [Node::Steps(steps)] => Body::Steps(steps.clone()),
            _ => Body::Template(nodes),
        };
        Ok(Self { body })
    }

    /// Evaluates the path: every match, in match order (of the first node of a template).
    pub fn matches<'a>(&self, root: &'a Value) -> Result<Matches<'a>, EvalError> {
        match &self.body {
            Body::Literal(text) => Ok(Matches::Literal(Value::String(text.clone()))),
            Body::Steps(steps) => {
                let values = eval_steps(steps, vec![root])?;
                Ok(Matches::Values(values))
            }
            Body::Template(nodes) => {
                let mut first = None;
                for node in nodes {
                    let matches = match node {
                        Node::Text(text) => Matches::Literal(Value::String(text.clone())),
                        Node::Steps(steps) => match eval_steps_found(steps, vec![root])? {
                            Some(values) => Matches::Values(values),
                            None => return Ok(Matches::Values(Vec::new())),
                        },
                    };
                    first.get_or_insert(matches);
                }
                Ok(first.unwrap_or(Matches::Values(Vec::new())))
            }
        }
    }

    /// The step lists of every block.
    fn blocks(&self) -> Vec<&[Step]> {
        match &self.body {
            Body::Literal(_) => Vec::new(),
            Body::Steps(steps) => vec![steps.as_slice()],
            Body::Template(nodes) => nodes
                .iter()
                .filter_map(|n| match n {
                    Node::Steps(steps) => Some(steps.as_slice()),
                    Node::Text(_) => None,
                })
                .collect(),
        }
    }

    /// Evaluates with the attribute cardinality rule: no match is `null`, exactly one match is
    /// that value, several are a list in match order.
    pub fn extract(&self, root: &Value) -> Result<Value, EvalError> {
        Ok(match self.matches(root)? {
            Matches::Literal(v) => v,
            Matches::Values(mut values) => match values.len() {
                0 => Value::Null,
                1 => values.pop().cloned().unwrap_or(Value::Null),
                _ => Value::Array(values.into_iter().cloned().collect()),
            },
        })
    }

    /// Whether the path uses a filter expression (admission warns about them).
    pub fn has_filter(&self) -> bool {
        fn any_filter(steps: &[Step]) -> bool {
            steps.iter().any(|s| match s {
                Step::Filter(_) => true,
                Step::Recursive(inner) => any_filter(std::slice::from_ref(inner)),
                _ => false,
            })
        }
        self.blocks().into_iter().any(any_filter)
    }

    /// Whether any field step reads a key named `name` (case-insensitive), e.g. `data`.
    pub fn reads_field(&self, name: &str) -> bool {
        fn step_reads(step: &Step, name: &str) -> bool {
            match step {
                Step::Field(f) => f.eq_ignore_ascii_case(name),
                Step::Recursive(inner) => step_reads(inner, name),
                Step::Union(selectors) => selectors
                    .iter()
                    .any(|s| matches!(s, Selector::Key(k) if k.eq_ignore_ascii_case(name))),
                _ => false,
            }
        }
        self.blocks()
            .into_iter()
            .any(|steps| steps.iter().any(|s| step_reads(s, name)))
    }

    /// Whether the path has wildcards or filters (prune paths warn about them).
    pub fn has_wildcard_or_filter(&self) -> bool {
        fn dynamic(step: &Step) -> bool {
            match step {
                Step::Wildcard | Step::Filter(_) | Step::Slice { .. } => true,
                Step::Recursive(_) | Step::Descendants => true,
                Step::Union(s) => s.len() > 1,
                _ => false,
            }
        }
        self.blocks().into_iter().any(|steps| steps.iter().any(dynamic))
    }

    /// Removes every location the path matches from `root` (used by `prune.jsonPaths`). List
    /// elements are removed, not nulled; a literal path removes nothing. Returns how many
    /// locations were removed.
    pub fn remove_from(&self, root: &mut Value) -> Result<usize, EvalError> {
        let locations = match self.matches(root)? {
            Matches::Literal(_) => return Ok(0),
            Matches::Values(values) => locate(root, &values),
        };
        let count = locations.len();
        // Remove later siblings first so earlier indexes stay valid; deeper paths first so a
        // parent removal does not strand a child removal.
        let mut locations = locations;
        locations.sort_by(|a, b| b.cmp(a));
        for location in locations {
            remove_location(root, &location);
        }
        Ok(count)
    }
}

/// What a path matched.
#[derive(Debug)]
pub enum Matches<'a> {
    /// The path was literal text.
    Literal(Value),
    /// Values found in the object.
    Values(Vec<&'a Value>),
}

/// One `{...}` block: a quoted string is text (`{"-"}`), `range`/`end` are refused, anything
/// else is steps (a leading `$` or `@` is the root, as in client-go).
fn parse_block(block: &str) -> Result<Node, ParseError> {
    let block = block.trim();
    if block.len() >= 2
        && ((block.starts_with('"') && block.ends_with('"'))
            || (block.starts_with('\'') && block.ends_with('\'')))
    {
        return Ok(Node::Text(block[1..block.len() - 1].to_owned()));
    }
    let block = block
        .strip_prefix('$')
        .or_else(|| block.strip_prefix('@'))
        .unwrap_or(block);
    if block.starts_with("range") || block == "end" {
        return Err(ParseError(
            "range/end templates are not supported in attribute paths".into(),
        ));
    }
    Ok(Node::Steps(Parser::new(block).steps_to_end()?))
}

/// Finds the first `{...}` block, honouring quotes inside it: the positions of `{` and `}`
/// and the text between them.
fn find_block(text: &str) -> Result<Option<(usize, &str, usize)>, ParseError> {
    let Some(open) = text.find('{') else {
        return Ok(None);
    };
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = open + 1;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'}' => return Ok(Some((open, &text[open + 1..i], i))),
            None => {}
        }
        i += 1;
    }
    Err(ParseError(format!("unclosed action in {text:?}")))
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += self.peek().map_or(0, char::len_utf8);
        }
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError(format!("{message} at position {} in {:?}", self.pos, self.src))
    }

    fn steps_to_end(mut self) -> Result<Vec<Step>, ParseError> {
        let steps = self.steps(&[])?;
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(self.error("unexpected character"));
        }
        Ok(steps)
    }

    /// Parses steps until the end or one of `stops` (used inside filters).
    fn steps(&mut self, stops: &[&str]) -> Result<Vec<Step>, ParseError> {
        let mut steps = Vec::new();
        loop {
            if self.pos >= self.src.len() || stops.iter().any(|s| self.rest().trim_start().starts_with(s)) {
                return Ok(steps);
            }
            if self.eat("..") {
                // client-go reads `...p` as `..` then `.p`, and a trailing `..` as every list and
                // map below.
                self.eat(".");
                if self.pos >= self.src.len() || stops.iter().any(|s| self.rest().trim_start().starts_with(s))
                {
                    steps.push(Step::Descendants);
                    return Ok(steps);
                }
                let inner = if self.peek() == Some('[') {
                    self.bracket()?
                } else {
                    self.field(stops)?
                };
                steps.push(Step::Recursive(Box::new(inner)));
            } else if self.eat(".") {
                if self.pos >= self.src.len() {
                    // `{.}` selects the current object.
                    return Ok(steps);
                }
                steps.push(self.field(stops)?);
            } else if self.peek() == Some('[') {
                steps.push(self.bracket()?);
            } else if steps.is_empty() && self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                // kubectl accepts `{metadata.name}` without the leading dot.
                steps.push(self.field(stops)?);
            } else {
                return Err(self.error("unexpected character"));
            }
        }
    }

    /// A field name: up to client-go's terminators (`.`, `[`, whitespace); inside a filter
    /// (`stops` not empty) also up to an operator or `)`.
    fn field(&mut self, stops: &[&str]) -> Result<Step, ParseError> {
        if self.eat("*") {
            return Ok(Step::Wildcard);
        }
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.pos += 1;
                match self.peek() {
                    Some(escaped) => {
                        name.push(escaped);
                        self.pos += escaped.len_utf8();
                    }
                    None => return Err(self.error("dangling escape")),
                }
                continue;
            }
            if c == '.' || c == '[' || c.is_whitespace() || (!stops.is_empty() && "=!<>)".contains(c)) {
                break;
            }
            name.push(c);
            self.pos += c.len_utf8();
        }
        if name.is_empty() {
            return Err(self.error("expected a field name"));
        }
        Ok(Step::Field(name))
    }

    fn bracket(&mut self) -> Result<Step, ParseError> {
        if !self.eat("[") {
            return Err(self.error("expected '['"));
        }
        self.skip_ws();
        let step = if self.eat("?") {
            self.skip_ws();
            if !self.eat("(") {
                return Err(self.error("expected '(' after '?'"));
            }
            let filter = self.filter()?;
            self.skip_ws();
            if !self.eat(")") {
                return Err(self.error("expected ')' closing the filter"));
            }
            Step::Filter(filter)
        } else if self.eat("*") {
            // client-go reads `[*]` as the slice `[:]`: lists only, unlike `.*`.
            Step::Slice {
                start: None,
                end: None,
                step: None,
            }
        } else {
            self.selectors()?
        };
        self.skip_ws();
        if !self.eat("]") {
            return Err(self.error("expected ']'"));
        }
        Ok(step)
    }

    fn selectors(&mut self) -> Result<Step, ParseError> {
        let first = self.selector_or_slice()?;
        self.skip_ws();
        if self.peek() != Some(',') {
            return Ok(match first {
                Either::Slice(step) => step,
                Either::Selector(Selector::Index(i)) => Step::Index(i),
                Either::Selector(Selector::Key(k)) => Step::Field(k),
            });
        }
        let Either::Selector(first) = first else {
            return Err(self.error("slices cannot be part of a union"));
        };
        let mut all = vec![first];
        while self.eat(",") {
            self.skip_ws();
            match self.selector_or_slice()? {
                Either::Selector(s) => all.push(s),
                Either::Slice(_) => return Err(self.error("slices cannot be part of a union")),
            }
            self.skip_ws();
        }
        Ok(Step::Union(all))
    }

    fn selector_or_slice(&mut self) -> Result<Either, ParseError> {
        self.skip_ws();
        if matches!(self.peek(), Some('\'') | Some('"')) {
            return Ok(Either::Selector(Selector::Key(self.quoted()?)));
        }
        let start = self.int()?;
        self.skip_ws();
        if !self.eat(":") {
            return match start {
                Some(i) => Ok(Either::Selector(Selector::Index(i))),
                None => Err(self.error("expected an index, a quoted key, '*' or a filter")),
            };
        }
        self.skip_ws();
        let end = self.int()?;
        self.skip_ws();
        let step = if self.eat(":") {
            self.skip_ws();
            self.int()?
        } else {
            None
        };
        if step == Some(0) {
            return Err(self.error("slice step cannot be 0"));
        }
        Ok(Either::Slice(Step::Slice { start, end, step }))
    }

    fn int(&mut self) -> Result<Option<i64>, ParseError> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
            .map(|(i, c)| i + c.len_utf8())
            .last()
            .unwrap_or(0);
        if len == 0 || &rest[..len] == "-" {
            return Ok(None);
        }
        let value = rest[..len]
            .parse::<i64>()
            .map_err(|_| self.error("index out of range"))?;
        self.pos += len;
        Ok(Some(value))
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let quote = self.peek().ok_or_else(|| self.error("expected a quote"))?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or_else(|| self.error("unterminated string"))?;
            self.pos += c.len_utf8();
            if c == '\\' {
                let escaped = self.peek().ok_or_else(|| self.error("unterminated string"))?;
                self.pos += escaped.len_utf8();
                out.push(escaped);
            } else if c == quote {
                return Ok(out);
            } else {
                out.push(c);
            }
        }
    }

    fn filter(&mut self) -> Result<Filter, ParseError> {
        self.skip_ws();
        let left = self.operand()?;
        self.skip_ws();
        let op = if self.eat("==") {
            Some(CompareOp::Eq)
        } else if self.eat("!=") {
            Some(CompareOp::Ne)
        } else if self.eat("<=") {
            Some(CompareOp::Le)
        } else if self.eat(">=") {
            Some(CompareOp::Ge)
        } else if self.eat("<") {
            Some(CompareOp::Lt)
        } else if self.eat(">") {
            Some(CompareOp::Gt)
        } else {
            None
        };
        let Some(op) = op else {
            return match left {
                Operand::Path(steps) => Ok(Filter::Exists(steps)),
                Operand::Literal(_) => Err(self.error("a filter needs a path or a comparison")),
            };
        };
        self.skip_ws();
        let right = self.operand()?;
        Ok(Filter::Compare { left, op, right })
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        match self.peek() {
            Some('@') => {
                self.pos += 1;
                Ok(Operand::Path(self.steps(&["==", "!=", "<", ">", ")"])?))
            }
            Some('\'') | Some('"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            _ => {
                let rest = self.rest();
                let len = rest
                    .find(|c: char| c.is_whitespace() || ")=!<>".contains(c))
                    .unwrap_or(rest.len());
                let token = &rest[..len];
                let value = match token {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => serde_json::from_str::<Value>(token)
                        .ok()
                        .filter(Value::is_number)
                        .ok_or_else(|| self.error("expected '@', a quoted string, a number or true/false"))?,
                };
                self.pos += len;
                Ok(Operand::Literal(value))
            }
        }
    }
}

enum Either {
    Selector(Selector),
    Slice(Step),
}

fn go_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn eval_steps<'a>(steps: &[Step], current: Vec<&'a Value>) -> Result<Vec<&'a Value>, EvalError> {
    Ok(eval_steps_found(steps, current)?.unwrap_or_default())
}

/// Like [`eval_steps`], but `None` when a field step found nothing in a non-empty input:
/// client-go's "not found", which a later template block turns into a null result.
fn eval_steps_found<'a>(
    steps: &[Step],
    mut current: Vec<&'a Value>,
) -> Result<Option<Vec<&'a Value>>, EvalError> {
    for step in steps {
        let next = eval_step_over(step, &current)?;
        if next.is_empty() {
            return Ok((!matches!(step, Step::Field(_))).then(Vec::new));
        }
        current = next;
    }
    Ok(Some(current))
}

/// One step over every current match. Unions and array ranges work on the whole set, as
/// client-go evaluates them; every other step maps each match on its own.
fn eval_step_over<'a>(step: &Step, input: &[&'a Value]) -> Result<Vec<&'a Value>, EvalError> {
    let mut out = Vec::new();
    match step {
        // Each member over the whole input: `[*]['a','b']` yields every `a`, then every `b`.
        Step::Union(selectors) => {
            for selector in selectors {
                let single = match selector {
                    Selector::Index(i) => Step::Index(*i),
                    Selector::Key(k) => Step::Field(k.clone()),
                };
                out.extend(eval_step_over(&single, input)?);
            }
        }
        Step::Index(_) | Step::Slice { .. } => {
            let range = ArrayRange::of(step);
            for value in input {
                match value {
                    // A null list is not found, not an error.
                    Value::Null => {}
                    Value::Array(items) => {
                        // client-go ends the step at the first empty range, whatever follows.
                        if !range.select_into(items, &mut out)? {
                            return Ok(out);
                        }
                    }
                    other => {
                        return Err(EvalError(format!(
                            "{} is not array or slice",
                            go_type_name(other)
                        )));
                    }
                }
            }
        }
        _ => {
            for value in input {
                eval_step(step, value, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// An index (`[n]`, the range `n..n+1`) or a slice, with client-go's bounds rules: negative
/// bounds count from the end, a range reaching outside the list is an error rather than
/// clamped, and the step must be positive.
struct ArrayRange {
    start: Option<i64>,
    end: Option<i64>,
    /// The end was derived from an index (`[-1]` ends at the list's length).
    derived_end: bool,
    step: Option<i64>,
}

impl ArrayRange {
    fn of(step: &Step) -> Self {
        match step {
            Step::Index(i) => Self {
                start: Some(*i),
                end: Some(i.saturating_add(1)),
                derived_end: true,
                step: None,
            },
            Step::Slice { start, end, step } => Self {
                start: *start,
                end: *end,
                derived_end: false,
                step: *step,
            },
            _ => Self {
                start: None,
                end: None,
                derived_end: false,
                step: None,
            },
        }
    }

    /// Appends the selected elements to `out`; `false` for an empty range.
    fn select_into<'a>(&self, items: &'a [Value], out: &mut Vec<&'a Value>) -> Result<bool, EvalError> {
        let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
        let mut start = self.start.unwrap_or(0);
        if start < 0 {
            start = start.saturating_add(len);
        }
        let mut end = self.end.unwrap_or(len);
        if end < 0 || (end == 0 && self.derived_end) {
            end = end.saturating_add(len);
        }
        if start == end {
            return Ok(false);
        }
        let out_of_bounds =
            |index: i64| EvalError(format!("array index out of bounds: index {index}, length {len}"));
        if start < 0 || start >= len {
            return Err(out_of_bounds(start));
        }
        if end < 0 || end > len {
            return Err(out_of_bounds(end - 1));
        }
        if start > end {
            return Err(EvalError(format!(
                "starting index {start} is greater than ending index {end}"
            )));
        }
        let step = match self.step {
            Some(step) if step <= 0 => return Err(EvalError("step must be > 0".into())),
            Some(step) => usize::try_from(step).unwrap_or(usize::MAX),
            None => 1,
        };
        // Both bounds are within 0..=len here.
        let (from, to) = (
            usize::try_from(start).unwrap_or_default(),
            usize::try_from(end).unwrap_or_default(),
        );
        out.extend(items[from..to].iter().step_by(step));
        Ok(true)
    }
}

fn eval_step<'a>(step: &Step, value: &'a Value, out: &mut Vec<&'a Value>) -> Result<(), EvalError> {
    match step {
        Step::Field(name) => {
            // A missing key, a field of a scalar or of null is "not found": no match.
            if let Some(v) = value.as_object().and_then(|m| m.get(name)) {
                out.push(v);
            }
        }
        Step::Wildcard => match value {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Step::Descendants => {
            let mut stack = vec![value];
            while let Some(node) = stack.pop() {
                match node {
                    Value::Array(items) if !items.is_empty() => {
                        out.push(node);
                        stack.extend(items.iter().rev());
                    }
                    Value::Object(map) if !map.is_empty() => {
                        out.push(node);
                        stack.extend(map.values().rev());
                    }
                    _ => {}
                }
            }
        }
        Step::Recursive(inner) => {
            let mut stack = vec![value];
            while let Some(node) = stack.pop() {
                // Matches at this node first, then descend (pre-order, children in order).
                let _ = eval_step(inner, node, out);
                match node {
                    Value::Array(items) => stack.extend(items.iter().rev()),
                    Value::Object(map) => stack.extend(map.values().rev()),
                    _ => {}
                }
            }
        }
        // Handled over the whole input by `eval_step_over`.
        Step::Index(_) | Step::Slice { .. } | Step::Union(_) => {
            out.extend(eval_step_over(step, &[value])?);
        }
        Step::Filter(filter) => {
            let Value::Array(items) = value else {
                return Err(EvalError(format!(
                    "{} is not array or slice and cannot be filtered",
                    go_type_name(value)
                )));
            };
            for candidate in items {
                if filter_matches(filter, candidate)? {
                    out.push(candidate);
                }
            }
        }
    }
    Ok(())
}

fn operand_values<'a>(operand: &'a Operand, candidate: &'a Value) -> Result<Vec<&'a Value>, EvalError> {
    match operand {
        Operand::Literal(v) => Ok(vec![v]),
        Operand::Path(steps) => eval_steps(steps, vec![candidate]),
    }
}

fn filter_matches(filter: &Filter, candidate: &Value) -> Result<bool, EvalError> {
    match filter {
        Filter::Exists(steps) => Ok(!eval_steps(steps, vec![candidate]).unwrap_or_default().is_empty()),
        Filter::Compare { left, op, right } => {
            // An element without the compared key is skipped (see the design record: client-go
            // fails the whole path there, which kubectl hides with AllowMissingKeys).
            let Some(left) = single_operand(left, candidate)? else {
                return Ok(false);
            };
            let Some(right) = single_operand(right, candidate)? else {
                return Ok(false);
            };
            compare(left, *op, right)
        }
    }
}

/// The one value an operand has for `candidate`; several are an error, none is `None`.
fn single_operand<'a>(operand: &'a Operand, candidate: &'a Value) -> Result<Option<&'a Value>, EvalError> {
    let values = operand_values(operand, candidate)?;
    match values.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(EvalError("can only compare one element at a time".into())),
    }
}

/// The kinds Go's template comparisons know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    String,
}

fn kind_of(value: &Value) -> Result<Kind, EvalError> {
    match value {
        Value::Bool(_) => Ok(Kind::Bool),
        Value::Number(n) if n.is_i64() => Ok(Kind::Int),
        Value::Number(n) if n.is_u64() => Ok(Kind::Uint),
        Value::Number(_) => Ok(Kind::Float),
        Value::String(_) => Ok(Kind::String),
        Value::Null | Value::Array(_) | Value::Object(_) => {
            Err(EvalError("invalid type for comparison".into()))
        }
    }
}

fn incompatible() -> EvalError {
    EvalError("incompatible types for comparison".into())
}

/// Orders two values of comparable kinds: an integer and a float, or a string and a number,
/// are incompatible (`80` does not equal `80.0` or `"80"`), as in Go's templates.
fn order(left: &Value, right: &Value) -> Result<Option<Ordering>, EvalError> {
    let (kl, kr) = (kind_of(left)?, kind_of(right)?);
    Ok(match (left, right) {
        (Value::Number(a), Value::Number(b)) => match (kl, kr) {
            (Kind::Float, Kind::Float) => a.as_f64().zip(b.as_f64()).and_then(|(x, y)| x.partial_cmp(&y)),
            (Kind::Float, _) | (_, Kind::Float) => return Err(incompatible()),
            // Signed and unsigned integers compare by value.
            _ => {
                let wide = |n: &serde_json::Number| {
                    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
                };
                wide(a).zip(wide(b)).map(|(x, y)| x.cmp(&y))
            }
        },
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => return Err(incompatible()),
    })
}

fn compare(left: &Value, op: CompareOp, right: &Value) -> Result<bool, EvalError> {
    let ordering = order(left, right)?;
    let ordered = || {
        if matches!(left, Value::Bool(_)) {
            Err(EvalError("invalid type for comparison".into()))
        } else {
            Ok(ordering)
        }
    };
    Ok(match op {
        CompareOp::Eq => ordering == Some(Ordering::Equal),
        CompareOp::Ne => ordering != Some(Ordering::Equal),
        CompareOp::Lt => ordered()? == Some(Ordering::Less),
        CompareOp::Le => matches!(ordered()?, Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => ordered()? == Some(Ordering::Greater),
        CompareOp::Ge => matches!(ordered()?, Some(Ordering::Greater | Ordering::Equal)),
    })
}

/// One step of a location inside a document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Loc {
    Index(usize),
    Key(String),
}

/// Finds where each of `targets` (references into `root`) sits, by address.
fn locate(root: &Value, targets: &[&Value]) -> Vec<Vec<Loc>> {
    let wanted: std::collections::HashSet<*const Value> =
        targets.iter().map(|v| *v as *const Value).collect();
    let mut out = Vec::new();
    let mut stack: Vec<(&Value, Vec<Loc>)> = vec![(root, Vec::new())];
    while let Some((node, path)) = stack.pop() {
        if !path.is_empty() && wanted.contains(&(node as *const Value)) {
            out.push(path.clone());
            continue;
        }
        match node {
            Value::Array(items) => {
                stack.extend(items.iter().enumerate().map(|(i, v)| {
                    let mut p = path.clone();
                    p.push(Loc::Index(i));
                    (v, p)
                }));
            }
            Value::Object(map) => {
                stack.extend(map.iter().map(|(k, v)| {
                    let mut p = path.clone();
                    p.push(Loc::Key(k.clone()));
                    (v, p)
                }));
            }
            _ => {}
        }
    }
    out
}

fn remove_location(root: &mut Value, location: &[Loc]) {
    let Some((last, parents)) = location.split_last() else {
        return;
    };
    let mut node = root;
    for step in parents {
        let next = match (step, node) {
            (Loc::Index(i), Value::Array(items)) => items.get_mut(*i),
            (Loc::Key(k), Value::Object(map)) => map.get_mut(k),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match (last, node) {
        (Loc::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
        }
        (Loc::Key(k), Value::Object(map)) => {
            map.remove(k);
        }
        _ => {}
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            Body::Literal(text) => f.write_str(text),
            Body::Steps(steps) => write!(f, "{{{} steps}}", steps.len()),
            Body::Template(nodes) => write!(f, "template of {} nodes", nodes.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(path: &str, v: &Value) -> Result<Value, String> {
        let p = JsonPath::parse(path).map_err(|e| format!("parse: {e}"))?;
        p.extract(v).map_err(|e| format!("eval: {e}"))
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "shop", "tier": "front"}},
            "spec": {
                "replicas": 3,
                "containers": [
                    {"name": "app", "image": "shop:1.0", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                    {"name": "sidecar", "image": "envoy:1.30", "ports": [{"containerPort": 9901}]}
                ],
                "single": [{"image": "only:1"}],
                "empty": [],
                "ratio": 0.5
            }
        })
    }

    #[test]
    fn parse_errors_name_the_position() {
        assert_eq!(
            JsonPath::parse("{.a[0}").unwrap_err().to_string(),
            r#"expected ']' at position 4 in ".a[0""#
        );
    }

    #[test]
    fn dollar_and_brace_forms_agree() {
        let p = pod();
        assert_eq!(eval("$.spec.replicas", &p), Ok(json!(3)));
        assert_eq!(eval("{.spec.replicas}", &p), Ok(json!(3)));
        assert_eq!(eval("{$.spec.replicas}", &p), Ok(json!(3)));
        assert_eq!(eval("{.metadata.name}", &p), Ok(json!("web")));
        assert_eq!(eval("{metadata.name}", &p), Ok(json!("web")));
    }

    #[test]
    fn cardinality_rule() {
        let p = pod();
        assert_eq!(
            eval("$.spec.containers[*].image", &p),
            Ok(json!(["shop:1.0", "envoy:1.30"]))
        );
        assert_eq!(
            eval("$.spec.single[*].image", &p),
            Ok(json!("only:1")),
            "one match is a scalar even for [*]"
        );
        assert_eq!(eval("$.spec.missing", &p), Ok(Value::Null));
        assert_eq!(eval("$.spec.empty[*].image", &p), Ok(Value::Null));
        assert_eq!(
            eval("$.spec.containers", &p).map(|v| v.as_array().map(Vec::len)),
            Ok(Some(2))
        );
    }

    #[test]
    fn indexes_slices_and_unions() {
        let p = pod();
        assert_eq!(eval("$.spec.containers[0].name", &p), Ok(json!("app")));
        assert_eq!(eval("$.spec.containers[-1].name", &p), Ok(json!("sidecar")));
        assert_eq!(eval("$.spec.containers[0:1].name", &p), Ok(json!("app")));
        assert_eq!(
            eval("$.spec.containers[0,1].name", &p),
            Ok(json!(["app", "sidecar"]))
        );
        assert_eq!(eval("$.spec['replicas','ratio']", &p), Ok(json!([3, 0.5])));
        assert_eq!(
            eval("$.spec.containers[-2:].name", &p),
            Ok(json!(["app", "sidecar"]))
        );
        assert_eq!(eval("$.spec.containers[:-1].name", &p), Ok(json!("app")));
        assert_eq!(eval("$.spec.containers[::2].name", &p), Ok(json!("app")));
        assert_eq!(
            eval("$.spec.containers[1:1].name", &p),
            Ok(Value::Null),
            "an empty range"
        );
    }

    /// Slices follow client-go: a range reaching outside the list is an error, not clamped.
    #[test]
    fn slice_bounds_are_errors_as_in_client_go() {
        let list = json!({"x": [1, 2, 3]});
        for (path, expected) in [
            ("$.x[0:10]", "array index out of bounds: index 9, length 3"),
            ("$.x[5:9]", "array index out of bounds: index 5, length 3"),
            ("$.x[2:1]", "starting index 2 is greater than ending index 1"),
            ("$.x[0:3:-1]", "step must be > 0"),
            ("$.x[::-1]", "step must be > 0"),
            ("$.x[-4]", "array index out of bounds: index -1, length 3"),
            ("$.x[-5:]", "array index out of bounds: index -2, length 3"),
        ] {
            assert_eq!(eval(path, &list), Err(format!("eval: {expected}")), "{path}");
        }
        assert_eq!(eval("$.x[0:3:2]", &list), Ok(json!([1, 3])));
        assert_eq!(eval("$.x[-1]", &list), Ok(json!(3)));
        assert_eq!(
            eval("$.x[3:3]", &list),
            Ok(Value::Null),
            "empty ranges may start at the end"
        );
    }

    /// `[*]` is the slice `[:]` in client-go: lists only. `.*` still reads a map's values.
    #[test]
    fn wrong_shapes_as_in_client_go() {
        let object = json!({"m": {"a": 1}, "s": "text", "n": null, "l": [{"p": 80}, {"p": 81.5}]});
        assert_eq!(
            eval("$.m[*]", &object),
            Err("eval: map[string]interface {} is not array or slice".into())
        );
        assert_eq!(
            eval("$.s[*]", &object),
            Err("eval: string is not array or slice".into())
        );
        assert_eq!(eval("$.m.*", &object), Ok(json!(1)));
        assert_eq!(
            eval("$.m[?(@.a)]", &object),
            Err("eval: map[string]interface {} is not array or slice and cannot be filtered".into())
        );
        // Indexing null is "not found".
        assert_eq!(eval("$.n[0]", &object), Ok(Value::Null));
        assert_eq!(eval("$.n[*]", &object), Ok(Value::Null));
        // Filter operands keep Go's template typing: an int never equals a float or a string.
        assert_eq!(
            eval("$.l[?(@.p==80.0)]", &object),
            Err("eval: incompatible types for comparison".into())
        );
        assert_eq!(
            eval(r#"$.l[?(@.p=="80")]"#, &object),
            Err("eval: incompatible types for comparison".into())
        );
        assert_eq!(
            eval("$.l[?(@.p==80)].p", &json!({"l": [{"p": 80}, {"p": 81}]})),
            Ok(json!(80))
        );
        assert_eq!(
            eval("$.l[?(@.p > 81.0)].p", &json!({"l": [{"p": 80.5}, {"p": 81.5}]})),
            Ok(json!(81.5))
        );
        assert_eq!(
            eval("$.l[?(@.b < true)]", &json!({"l": [{"b": false}]})),
            Err("eval: invalid type for comparison".into())
        );
        // A left side with several values is an error.
        assert_eq!(
            eval("$.l[?(@.q[*]==1)]", &json!({"l": [{"q": [1, 2]}]})),
            Err("eval: can only compare one element at a time".into())
        );
    }

    /// Unions after a multi-match step give every match of the first member, then the next.
    #[test]
    fn unions_run_over_all_matches() {
        let object = json!({"x": [{"n": "a", "i": 1}, {"n": "b", "i": 2}]});
        assert_eq!(eval("$.x[*]['n','i']", &object), Ok(json!(["a", "b", 1, 2])));
        assert_eq!(eval("$.x[0,1].n", &object), Ok(json!(["a", "b"])));
    }

    /// Kept deliberately (design record E-series): an element without the compared key is
    /// skipped, and a bracket key holding dots is one key. client-go fails the whole path in
    /// the first case and re-reads the key as a path in the second; both turn a present value
    /// into null.
    #[test]
    fn missing_keys_in_filters_skip_the_element() {
        let ports = json!({"ports": [{"port": 80}, {"name": "https", "port": 443}]});
        assert_eq!(
            eval(r#"$.ports[?(@.name=="https")].port"#, &ports),
            Ok(json!(443))
        );
        let labels = json!({"labels": {"app.kubernetes.io/name": "shop"}});
        assert_eq!(
            eval("$.labels['app.kubernetes.io/name']", &labels),
            Ok(json!("shop"))
        );
    }

    #[test]
    fn keys_with_dots() {
        let p = pod();
        assert_eq!(
            eval("$.metadata.labels['app.kubernetes.io/name']", &p),
            Ok(json!("shop"))
        );
        assert_eq!(
            eval(r#"{.metadata.labels.app\.kubernetes\.io/name}"#, &p),
            Ok(json!("shop"))
        );
        assert_eq!(eval(r#"$.metadata.labels["tier"]"#, &p), Ok(json!("front")));
    }

    #[test]
    fn recursive_descent_and_wildcards() {
        let p = pod();
        assert_eq!(eval("$..containerPort", &p), Ok(json!([80, 443, 9901])));
        assert_eq!(eval("$.metadata.labels.*", &p), Ok(json!(["shop", "front"])));
        assert_eq!(
            eval("$..image", &p),
            Ok(json!(["shop:1.0", "envoy:1.30", "only:1"]))
        );
    }

    #[test]
    fn filters() {
        let p = pod();
        assert_eq!(
            eval(r#"$.spec.containers[?(@.name=="sidecar")].image"#, &p),
            Ok(json!("envoy:1.30"))
        );
        assert_eq!(
            eval(r#"$.spec.containers[?(@.name != 'sidecar')].image"#, &p),
            Ok(json!("shop:1.0"))
        );
        assert_eq!(
            eval(
                "$.spec.containers[0].ports[?(@.containerPort > 100)].containerPort",
                &p
            ),
            Ok(json!(443))
        );
        assert_eq!(
            eval("$.spec.containers[?(@.ports[0].containerPort <= 80)].name", &p),
            Ok(json!("app"))
        );
        assert_eq!(
            eval("$.spec.containers[?(@.ports)].name", &p),
            Ok(json!(["app", "sidecar"]))
        );
        assert_eq!(eval("$.spec.containers[?(@.nope)].name", &p), Ok(Value::Null));
        assert!(JsonPath::parse(r#"$.a[?(@.b=="c")]"#).unwrap().has_filter());
    }

    #[test]
    fn error_rules() {
        let p = pod();
        // Indexing a non-list and out-of-range indexes are errors; missing keys are null.
        assert_eq!(
            eval("$.metadata.name[0]", &p),
            Err("eval: string is not array or slice".into())
        );
        assert_eq!(
            eval("$.metadata[0]", &p),
            Err("eval: map[string]interface {} is not array or slice".into())
        );
        assert_eq!(
            eval("$.spec.empty[0]", &p),
            Err("eval: array index out of bounds: index 0, length 0".into())
        );
        assert_eq!(
            eval("$.spec.containers[5]", &p),
            Err("eval: array index out of bounds: index 5, length 2".into())
        );
        assert_eq!(
            eval("$.spec.missing[0]", &p),
            Ok(Value::Null),
            "a missing list key is null"
        );
        assert_eq!(
            eval("$.metadata.name.first", &p),
            Ok(Value::Null),
            "a field of a scalar is not found"
        );
        assert_eq!(
            eval("$.spec.replicas.x", &json!({"spec": {"replicas": null}})),
            Ok(Value::Null)
        );
    }

    #[test]
    fn templates_take_the_first_node_and_evaluate_the_rest() {
        let p = pod();
        assert_eq!(eval("metadata.name", &p), Ok(json!("metadata.name")));
        // client-go: the first node is the value, leading text included.
        assert_eq!(
            eval("name: {.metadata.name} {.spec.replicas}", &p),
            Ok(json!("name: "))
        );
        assert_eq!(eval("{.metadata.name}-{.spec.replicas}", &p), Ok(json!("web")));
        // Later blocks still run: a key they do not find makes the result null, and their
        // errors fail the path.
        assert_eq!(eval("{.metadata.name}{.metadata.nope}", &p), Ok(Value::Null));
        assert_eq!(
            eval("{.metadata.name}{.spec.containers[9]}", &p),
            Err("eval: array index out of bounds: index 9, length 2".into())
        );
        // An empty match is not "not found".
        assert_eq!(eval("{.metadata.name}{.spec.empty[*]}", &p), Ok(json!("web")));
    }

    #[test]
    fn block_syntax_client_go_accepts() {
        let p = pod();
        assert_eq!(eval(r#"{"lit"}"#, &p), Ok(json!("lit")));
        assert_eq!(eval("{@.metadata.name}", &p), Ok(json!("web")));
        assert_eq!(eval("{.spec...containerPort}", &p), Ok(json!([80, 443, 9901])));
        assert_eq!(
            eval("$.metadata.<k>", &json!({"metadata": {"<k>": 1}})),
            Ok(json!(1))
        );
        let nested = json!({"x": {"a": [1], "b": {"c": {}}}});
        assert_eq!(
            eval("{.x..}", &nested),
            Ok(json!([{"a": [1], "b": {"c": {}}}, [1], {"c": {}}])),
            "every non-empty list and map from x down"
        );
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "{.spec",
            "$.a[",
            "$.a[?(@.x ==)]",
            "$.a['x]",
            "$.a[1:2:0]",
            "{range .items[*]}",
            "$.a b",
            "$.a[?@.x]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn removal_of_matches() {
        let mut p = pod();
        let removed = JsonPath::parse("$.spec.containers[*].ports")
            .unwrap()
            .remove_from(&mut p)
            .unwrap();
        assert_eq!(removed, 2);
        assert_eq!(
            p["spec"]["containers"][0],
            json!({"name": "app", "image": "shop:1.0"})
        );
        let mut p = pod();
        JsonPath::parse(r#"$.spec.containers[?(@.name=="app")]"#)
            .unwrap()
            .remove_from(&mut p)
            .unwrap();
        assert_eq!(p["spec"]["containers"].as_array().map(Vec::len), Some(1));
        assert_eq!(p["spec"]["containers"][0]["name"], "sidecar");
        let mut p = pod();
        JsonPath::parse("$.spec.containers[0,1]")
            .unwrap()
            .remove_from(&mut p)
            .unwrap();
        assert_eq!(p["spec"]["containers"], json!([]));
        let mut p = pod();
        assert_eq!(
            JsonPath::parse("$..containerPort")
                .unwrap()
                .remove_from(&mut p)
                .unwrap(),
            3
        );
        assert!(!p.to_string().contains("containerPort"));
        let mut p = pod();
        assert_eq!(
            JsonPath::parse("literal").unwrap().remove_from(&mut p).unwrap(),
            0
        );
        assert_eq!(p, pod());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(path in ".{0,40}", v in proptest::strategy::Just(pod())) {
            if let Ok(p) = JsonPath::parse(&path) {
                let _ = p.extract(&v);
            }
        }

        #[test]
        fn never_panics_on_pathlike_input(path in "[$.{}\\[\\]*?@()'\"=<>!0-9a-z:,-]{0,30}") {
            if let Ok(p) = JsonPath::parse(&path) {
                let _ = p.extract(&pod());
            }
        }
    }
}
