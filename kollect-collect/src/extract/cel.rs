//! CEL attribute paths and match policies.
//!
//! The environment has one variable, `object` (the whole Kubernetes object). Besides the CEL
//! standard library (`has`, `size`, `in`, the ternary operator, the macros `all`, `exists`,
//! `exists_one`, `map`, `filter`, `contains`, `startsWith`, `endsWith`, `matches` (RE2 syntax),
//! conversions `int`, `uint`, `double`, `string`, `bytes`, `bool`, `dyn`, `type`, and
//! `timestamp`/`duration` with their accessors), the extension libraries of the `cel` crate are
//! registered, matching cel-go's `ext` package:
//!
//! - strings: `charAt`, `indexOf`, `lastIndexOf`, `lowerAscii`, `upperAscii`, `replace`,
//!   `split`, `substring`, `trim`, `reverse`, `join` (on lists), `format`, `strings.quote`;
//! - lists: `slice`, `flatten`, `distinct`, `reverse`, `sort`, `sortBy`, `lists.range`;
//! - math: `math.ceil`, `math.floor`, `math.round`, `math.trunc`, `math.abs`, `math.sign`,
//!   `math.sqrt`, `math.isInf`, `math.isNaN`, `math.isFinite`, `math.greatest`, `math.least`,
//!   bit operations;
//! - encoders: `base64.encode`, `base64.decode`.
//!
//! Iterating a map in a macro (`object.data.map(k, k)`) has no defined order, as in cel-go; add
//! `.sort()` when the order matters, or the row's checksum changes between evaluations.
//!
//! Programs are parsed once ([`CelProgram::compile`]); free variables other than `object` are
//! rejected at compile time. A missing key read without `has()` is an evaluation error, not
//! null.
//!
//! **Input conversion.** The `cel` crate evaluates over its own value types, so an object must
//! be converted before evaluation, and the interpreter copies every map it selects a field from.
//! To keep both costs proportional to what a program reads, the compiler records the field
//! chains each program selects from `object` (`object.spec.template.spec.containers`,
//! `has(object.status.readyReplicas)`); [`CelInput`] converts a sparse projection holding only
//! those chains (whole subtrees at their ends), once per object for all programs of a profile.
//! Missing keys stay missing, so evaluation errors are the same as on the full object. A program
//! that uses `object` in any other way (e.g. `size(object)`) gets the whole object.
//!
//! **Bounded evaluation.** The crate has no cost tracking or interruption, so evaluation is
//! bounded before it starts: comprehension nesting deeper than [`CelLimits::max_nesting`] is a
//! compile error, and the estimated cost `nodes * (largest collection + 1) ^ nesting` computed on
//! the actual input must stay within [`CelLimits::max_cost`], otherwise evaluation fails with a
//! clear error instead of running.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use base64::Engine;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::objects::{Key, OptionalValue};
use cel::{Context, Env, Program, Value as CelValue};
use kollect_core::model::format_exported_at;

use super::cel_check::{NAMESPACES, is_type_name};
use serde_json::{Number, Value};

/// Bounds on CEL evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CelLimits {
    /// Deepest nesting of comprehension macros (`map`, `filter`, `all`, ...) a program may have.
    pub max_nesting: u32,
    /// Largest estimated cost of one evaluation.
    pub max_cost: u64,
}

impl Default for CelLimits {
    /// Nesting up to 3, estimated cost up to 10,000,000 (a few tens of milliseconds).
    fn default() -> Self {
        Self {
            max_nesting: 3,
            max_cost: 10_000_000,
        }
    }
}

/// The only variable of the environment.
pub(crate) const OBJECT: &str = "object";

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Registration only fails on a duplicate declaration, which a fresh standard environment
    // cannot have; a failure would leave that library's functions undefined, surfacing as
    // evaluation errors rather than a crash.
    let _ = cel::extensions::strings(&mut env);
    let _ = cel::extensions::lists(&mut env);
    let _ = cel::extensions::math(&mut env);
    let _ = cel::extensions::encoders(&mut env);
    let _ = super::cel_string::register(&mut env);
    Arc::new(env)
});

/// The environment every program runs in.
pub(super) fn environment() -> &'static Env {
    &ENV
}

/// Which parts of `object` a program reads: a trie of field chains, or everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldNeed {
    /// Only these chains (a node marked `whole` needs its complete subtree).
    Paths(PathTrie),
    /// The whole object.
    All,
}

/// A set of field chains, merged by common prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathTrie {
    whole: bool,
    children: BTreeMap<String, PathTrie>,
}

impl PathTrie {
    fn insert(&mut self, chain: &[String]) {
        if self.whole {
            return;
        }
        match chain.split_first() {
            None => {
                self.whole = true;
                self.children.clear();
            }
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    fn merge(&mut self, other: &PathTrie) {
        if other.whole {
            self.whole = true;
            self.children.clear();
            return;
        }
        if self.whole {
            return;
        }
        for (key, child) in &other.children {
            self.children.entry(key.clone()).or_default().merge(child);
        }
    }

    /// The top-level fields needed, in order.
    pub fn top_level(&self) -> Vec<&str> {
        self.children.keys().map(String::as_str).collect()
    }
}

impl FieldNeed {
    /// The union of two needs.
    pub fn union(&self, other: &FieldNeed) -> FieldNeed {
        match (self, other) {
            (FieldNeed::Paths(a), FieldNeed::Paths(b)) => {
                let mut merged = a.clone();
                merged.merge(b);
                FieldNeed::Paths(merged)
            }
            _ => FieldNeed::All,
        }
    }
}

/// A compiled CEL expression.
#[derive(Debug)]
pub struct CelProgram {
    /// The parsed program, with `string` calls renamed for cel-go's double formatting.
    expr: IdedExpr,
    need: FieldNeed,
    nesting: u32,
    nodes: u64,
}

/// A CEL failure, with the Go operator's prefixes (`compile CEL: …`, `eval CEL: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    /// The expression is empty.
    #[error("empty CEL expression")]
    Empty,
    /// The expression does not parse or references unknown variables.
    #[error("compile CEL: {0}")]
    Compile(String),
    /// Evaluation failed.
    #[error("eval CEL: {0}")]
    Eval(String),
}

impl CelProgram {
    /// Parses and checks `source`.
    pub fn compile(source: &str, limits: &CelLimits) -> Result<Self, CelError> {
        Self::compile_checked(source, limits, true)
    }

    /// [`CelProgram::compile`], with the static checks optional: cel-go's conformance tests
    /// run some programs without its checker.
    pub(super) fn compile_checked(source: &str, limits: &CelLimits, check: bool) -> Result<Self, CelError> {
        let source = source.trim();
        if source.is_empty() {
            return Err(CelError::Empty);
        }
        let program = ENV
            .compile(source)
            .map_err(|e| CelError::Compile(e.to_string().trim().to_owned()))?;
        let mut analysis = Analysis::default();
        analysis.walk(&program.expression().expr, &mut Vec::new(), 0);
        if let Some(name) = analysis.undeclared.first() {
            return Err(CelError::Compile(format!(
                "undeclared reference to '{name}' (only 'object' is defined)"
            )));
        }
        if check {
            super::cel_check::check(&program.expression().expr).map_err(CelError::Compile)?;
        }
        if analysis.max_nesting > limits.max_nesting {
            return Err(CelError::Compile(format!(
                "comprehensions nested {} deep exceed the limit of {}",
                analysis.max_nesting, limits.max_nesting
            )));
        }
        let need = if analysis.whole_object {
            FieldNeed::All
        } else {
            let mut trie = PathTrie::default();
            for chain in &analysis.chains {
                trie.insert(chain);
            }
            FieldNeed::Paths(trie)
        };
        let mut expr = program.expression().clone();
        super::cel_string::rewrite(&mut expr);
        Ok(Self {
            expr,
            need,
            nesting: analysis.max_nesting,
            nodes: analysis.nodes,
        })
    }

    /// The parts of `object` this program reads.
    pub fn need(&self) -> &FieldNeed {
        &self.need
    }

    /// The program as it runs, for tests that need the raw CEL result.
    #[cfg(test)]
    pub(super) fn expr(&self) -> &IdedExpr {
        &self.expr
    }

    fn execute(&self, input: &CelInput<'_>, limits: &CelLimits) -> Result<CelValue, CelError> {
        let base = (input.largest_collection as u64).saturating_add(1);
        let cost = self.nodes.saturating_mul(base.saturating_pow(self.nesting));
        if cost > limits.max_cost {
            return Err(CelError::Eval(format!(
                "estimated cost {cost} exceeds the limit of {} (comprehensions nested {} deep over collections of up to {} items)",
                limits.max_cost, self.nesting, input.largest_collection
            )));
        }
        CelValue::resolve(&self.expr, &input.context).map_err(|e| CelError::Eval(go_message(&e)))
    }

    /// Evaluates and converts the result to JSON: integers stay integers, timestamps become
    /// RFC 3339 strings, durations integer nanoseconds, bytes base64.
    pub fn evaluate(&self, input: &CelInput<'_>, limits: &CelLimits) -> Result<Value, CelError> {
        to_json(&self.execute(input, limits)?).map_err(CelError::Eval)
    }

    /// Evaluates a predicate: true only for `true` (or a string that reads as true); any other
    /// value or an error counts as false.
    pub fn evaluate_predicate(&self, input: &CelInput<'_>, limits: &CelLimits) -> bool {
        match self.execute(input, limits) {
            Ok(CelValue::Bool(b)) => b,
            Ok(CelValue::String(s)) => s.trim().parse::<bool>().unwrap_or(false),
            _ => false,
        }
    }
}

/// A converted object, ready for any number of programs: the evaluation context with `object`
/// bound, built once per object. Strings are borrowed from the object, not copied.
pub struct CelInput<'v> {
    context: Context<'v, 'v>,
    largest_collection: usize,
}

impl std::fmt::Debug for CelInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelInput")
            .field("largest_collection", &self.largest_collection)
            .finish_non_exhaustive()
    }
}

impl<'v> CelInput<'v> {
    /// The evaluation context, for tests that need the raw CEL result.
    #[cfg(test)]
    pub(super) fn context(&self) -> &Context<'v, 'v> {
        &self.context
    }

    /// Converts the parts of `object` that `need` asks for.
    pub fn new(object: &'v Value, need: &FieldNeed) -> Self {
        let mut largest = 0;
        let value = match need {
            FieldNeed::Paths(trie) => project(object, trie, &mut largest),
            FieldNeed::All => to_val(object, &mut largest),
        };
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.add_variable_as_val(OBJECT, value);
        Self {
            context,
            largest_collection: largest,
        }
    }
}

/// Converts only the chains of `trie`: whole subtrees at chain ends, maps with just the needed
/// keys above them. A value that is not a map where the trie goes deeper is converted whole, so
/// selecting into it fails exactly as it would on the full object.
fn project<'v>(value: &'v Value, trie: &PathTrie, largest: &mut usize) -> Box<dyn Val + 'v> {
    match value {
        Value::Object(map) if !trie.whole => {
            *largest = (*largest).max(map.len());
            let converted: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = trie
                .children
                .iter()
                .filter_map(|(key, child)| {
                    map.get_key_value(key.as_str()).map(|(k, v)| {
                        (
                            CelMapKey::String(CelString::from(k.as_str())),
                            project(v, child, largest),
                        )
                    })
                })
                .collect();
            Box::new(CelMap::from(converted))
        }
        _ => to_val(value, largest),
    }
}

/// Converts a JSON value into CEL values that borrow its strings. Whole numbers become `int`
/// (or `uint` above `i64::MAX`), others `double`.
fn to_val<'v>(value: &'v Value, largest: &mut usize) -> Box<dyn Val + 'v> {
    match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) {
                // `-0`, which serde_json reads as a negative zero float and Kubernetes' decoder
                // (so cel-go's input) as the integer 0.
                Box::new(CelInt::from(0))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            *largest = (*largest).max(items.len());
            let converted: Vec<Box<dyn Val + 'v>> = items.iter().map(|v| to_val(v, largest)).collect();
            Box::new(CelList::from(converted))
        }
        Value::Object(map) => {
            *largest = (*largest).max(map.len());
            let converted: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = map
                .iter()
                .map(|(k, v)| (CelMapKey::String(CelString::from(k.as_str())), to_val(v, largest)))
                .collect();
            Box::new(CelMap::from(converted))
        }
    }
}

/// Converts a CEL result to JSON as the Go operator's encoder would write it.
fn to_json(value: &CelValue) -> Result<Value, String> {
    Ok(match value {
        CelValue::Null => Value::Null,
        CelValue::Bool(b) => Value::Bool(*b),
        CelValue::Int(i) => Value::from(*i),
        CelValue::UInt(u) => Value::from(*u),
        CelValue::Float(f) => {
            Value::Number(Number::from_f64(*f).ok_or_else(|| format!("result {f} is not a finite number"))?)
        }
        CelValue::String(s) => Value::String(s.to_string()),
        CelValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice())),
        CelValue::List(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        CelValue::Map(map) => {
            let mut out = serde_json::Map::new();
            for (key, v) in map.map.iter() {
                let Key::String(k) = key else {
                    return Err(format!(
                        "map key {key:?} is not a string; JSON objects need string keys"
                    ));
                };
                out.insert(k.to_string(), to_json(v)?);
            }
            Value::Object(out)
        }
        CelValue::Timestamp(ts) => Value::String(format_timestamp(ts)?),
        CelValue::Duration(d) => Value::from(d.num_nanoseconds().ok_or("duration out of range")?),
        // An optional result is its value, or null when empty.
        CelValue::Opaque(_) if <&OptionalValue>::try_from(value).is_ok() => {
            match <&OptionalValue>::try_from(value).ok().and_then(|o| o.value()) {
                Some(inner) => to_json(inner)?,
                None => Value::Null,
            }
        }
        other => return Err(format!("result of type {} cannot be exported", other.type_of())),
    })
}

/// cel-go's wording for the runtime errors users match on (`no such key: x`, in lower case);
/// the crate's own text for the rest.
fn go_message(error: &cel::ExecutionError) -> String {
    match error {
        cel::ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        cel::ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        cel::ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        cel::ExecutionError::Overflow(..) => "integer overflow".to_owned(),
        other => other.to_string(),
    }
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed, in the timestamp's own offset (`Z` for
/// UTC), as Go's `time.RFC3339Nano` writes it.
fn format_timestamp(ts: &chrono::DateTime<chrono::FixedOffset>) -> Result<String, String> {
    let offset = ts.offset().local_minus_utc();
    // The wall-clock time at that offset, written as if it were UTC, then the offset instead
    // of `Z`.
    let local = k8s_openapi::jiff::Timestamp::new(
        ts.timestamp() + i64::from(offset),
        i32::try_from(ts.timestamp_subsec_nanos()).unwrap_or(0),
    )
    .map_err(|e| format!("timestamp out of range: {e}"))?;
    let mut text = format_exported_at(local);
    if offset != 0 {
        text.pop();
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs() / 60;
        text.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    Ok(text)
}

/// What the compiler learns from walking the expression.
#[derive(Default)]
struct Analysis {
    chains: Vec<Vec<String>>,
    whole_object: bool,
    undeclared: Vec<String>,
    max_nesting: u32,
    nodes: u64,
}

impl Analysis {
    fn walk(&mut self, expr: &Expr, scope: &mut Vec<String>, nesting: u32) {
        self.nodes += 1;
        match expr {
            Expr::Ident(name) => {
                if scope.iter().any(|s| s == name) {
                    return;
                }
                if name == OBJECT {
                    // `object` used on its own (not as `object.field`): convert all of it.
                    self.whole_object = true;
                } else if !name.starts_with('@') && !is_type_name(name) {
                    self.undeclared.push(name.clone());
                }
            }
            Expr::Select(select) => {
                // Collect the select chain under this node; if it is rooted at `object`, record it.
                let mut chain = vec![select.field.clone()];
                let mut operand = &select.operand.expr;
                while let Expr::Select(inner) = operand {
                    chain.push(inner.field.clone());
                    operand = &inner.operand.expr;
                }
                if let Expr::Ident(name) = operand
                    && name == OBJECT
                    && !scope.iter().any(|s| s == OBJECT)
                {
                    chain.reverse();
                    self.nodes += chain.len() as u64;
                    self.chains.push(chain);
                    return;
                }
                self.walk(&select.operand.expr, scope, nesting);
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    // `math.ceil(x)`: a namespaced function, not a call on a variable `math`.
                    let namespaced = matches!(&target.expr, Expr::Ident(ns)
                        if NAMESPACES.contains(&ns.as_str()) && !scope.iter().any(|s| s == ns));
                    if !namespaced {
                        self.walk(&target.expr, scope, nesting);
                    }
                }
                for arg in &call.args {
                    self.walk(&arg.expr, scope, nesting);
                }
            }
            Expr::Comprehension(comp) => {
                let depth = nesting + 1;
                self.max_nesting = self.max_nesting.max(depth);
                self.walk(&comp.iter_range.expr, scope, nesting);
                self.walk(&comp.accu_init.expr, scope, nesting);
                let pushed = 2 + usize::from(comp.iter_var2.is_some());
                scope.push(comp.iter_var.clone());
                scope.push(comp.accu_var.clone());
                if let Some(v2) = &comp.iter_var2 {
                    scope.push(v2.clone());
                }
                for part in [&comp.loop_cond, &comp.loop_step, &comp.result] {
                    self.walk(&part.expr, scope, depth);
                }
                scope.truncate(scope.len() - pushed);
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.walk(&element.expr, scope, nesting);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.walk_entry(&entry.expr, scope, nesting);
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    self.walk_entry(&entry.expr, scope, nesting);
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn walk_entry(&mut self, entry: &EntryExpr, scope: &mut Vec<String>, nesting: u32) {
        match entry {
            EntryExpr::MapEntry(e) => {
                self.walk(&e.key.expr, scope, nesting);
                self.walk(&e.value.expr, scope, nesting);
            }
            EntryExpr::StructField(f) => self.walk(&f.value.expr, scope, nesting),
        }
    }
}

/// Whether an expression reads a field (at any depth) named `name`, case-insensitively, e.g.
/// `object.data` or `object.data['key']` for the Secret-data admission rule.
pub(crate) fn reads_field(source: &str, name: &str) -> bool {
    let Ok(program) = Program::compile(source.trim()) else {
        return false;
    };
    fn visit(expr: &IdedExpr, name: &str) -> bool {
        match &expr.expr {
            Expr::Select(s) => s.field.eq_ignore_ascii_case(name) || visit(&s.operand, name),
            Expr::Call(c) => {
                c.target.as_deref().is_some_and(|t| visit(t, name)) || c.args.iter().any(|a| visit(a, name))
            }
            Expr::Comprehension(c) => [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .iter()
                .any(|e| visit(e, name)),
            Expr::List(l) => l.elements.iter().any(|e| visit(e, name)),
            _ => false,
        }
    }
    visit(program.expression(), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "shop"}, "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "app", "image": "shop:1.0", "resources": {"limits": {"cpu": "500m"}}},
                {"name": "sidecar", "image": "envoy:1.30"}
            ]}}},
            "status": {"readyReplicas": 2, "ratio": 0.5}
        })
    }

    fn eval(expr: &str) -> Result<Value, CelError> {
        let limits = CelLimits::default();
        let program = CelProgram::compile(expr, &limits)?;
        program.evaluate(&CelInput::new(&deployment(), program.need()), &limits)
    }

    /// Every namespaced extension function and type denotation the reference lists works.
    #[test]
    fn namespaced_functions_and_type_denotations() {
        for (expr, expected) in [
            ("math.ceil(1.2)", json!(2.0)),
            ("math.floor(1.8)", json!(1.0)),
            ("math.round(1.5)", json!(2.0)),
            ("math.trunc(-1.5)", json!(-1.0)),
            ("math.abs(-3)", json!(3)),
            ("math.sign(-2.5)", json!(-1.0)),
            ("math.sqrt(16)", json!(4.0)),
            ("math.isInf(1.0 / 0.0)", json!(true)),
            ("math.isNaN(0.0 / 0.0)", json!(true)),
            ("math.isFinite(1.0)", json!(true)),
            ("math.bitAnd(6, 3)", json!(2)),
            ("math.bitOr(4, 1)", json!(5)),
            ("math.greatest(1, 5, 3)", json!(5)),
            ("math.least(object.spec.replicas, 2)", json!(2)),
            ("'%s has %d'.format(['web', 3])", json!("web has 3")),
            ("base64.encode(b'hi')", json!("aGk=")),
            ("string(base64.decode('aGk='))", json!("hi")),
            ("strings.quote('a')", json!("\"a\"")),
            ("lists.range(3)", json!([0, 1, 2])),
            ("type(1) == int", json!(true)),
            ("type('a') == string", json!(true)),
            ("type(object.spec) == map", json!(true)),
            ("type([1]) == list", json!(true)),
            (
                "type(1u) == uint && type(1.0) == double && type(true) == bool",
                json!(true),
            ),
            (
                "type(null) == null_type && type(b'x') == bytes && type(int) == type",
                json!(true),
            ),
        ] {
            assert_eq!(eval(expr), Ok(expected), "{expr}");
        }
        // A comprehension variable may shadow a namespace.
        assert_eq!(eval("[1, 2].map(math, math + 1)"), Ok(json!([2, 3])));
    }

    #[test]
    fn standard_library() {
        assert_eq!(eval("size(object.spec.template.spec.containers)"), Ok(json!(2)));
        assert_eq!(eval("object.spec.replicas"), Ok(json!(3)));
        assert_eq!(eval("object.status.ratio * 2.0"), Ok(json!(1.0)));
        assert_eq!(
            eval("has(object.status.readyReplicas) ? object.status.readyReplicas : 0"),
            Ok(json!(2))
        );
        assert_eq!(eval("has(object.status.missing)"), Ok(json!(false)));
        assert_eq!(eval("'app' in object.metadata.labels"), Ok(json!(true)));
        assert_eq!(
            eval("object.spec.template.spec.containers.map(c, c.image)"),
            Ok(json!(["shop:1.0", "envoy:1.30"]))
        );
        assert_eq!(
            eval("object.spec.template.spec.containers.filter(c, c.name == 'app').size()"),
            Ok(json!(1))
        );
        assert_eq!(
            eval("object.spec.template.spec.containers.all(c, c.image.contains(':'))"),
            Ok(json!(true))
        );
        assert_eq!(
            eval("object.spec.template.spec.containers.exists(c, c.name.startsWith('side'))"),
            Ok(json!(true))
        );
        assert_eq!(
            eval("object.spec.template.spec.containers.exists_one(c, has(c.resources))"),
            Ok(json!(true))
        );
        assert_eq!(eval("object.metadata.name.matches('^w.b$')"), Ok(json!(true)));
        assert_eq!(eval("string(object.spec.replicas) + 'x'"), Ok(json!("3x")));
        assert_eq!(eval("int('42') + 1"), Ok(json!(43)));
        assert_eq!(eval("{'a': 1}"), Ok(json!({"a": 1})));
        assert_eq!(eval("null"), Ok(Value::Null));
    }

    #[test]
    fn kubernetes_extensions() {
        assert_eq!(eval("object.metadata.name.upperAscii()"), Ok(json!("WEB")));
        assert_eq!(eval("'a,b'.split(',')"), Ok(json!(["a", "b"])));
        assert_eq!(
            eval("object.spec.template.spec.containers[0].image.split(':')[1]"),
            Ok(json!("1.0"))
        );
    }

    #[test]
    fn string_of_a_double_is_go_percent_g() {
        assert_eq!(eval("string(1234567.0)"), Ok(json!("1.234567e+06")));
        assert_eq!(eval("string(1e21)"), Ok(json!("1e+21")));
        assert_eq!(eval("string(1e-5)"), Ok(json!("1e-05")));
        assert_eq!(eval("string(123.456)"), Ok(json!("123.456")));
        assert_eq!(eval("[1.5e7].map(x, string(x))"), Ok(json!(["1.5e+07"])));
        // Every other argument type keeps the standard conversion and its errors.
        assert_eq!(
            eval("string(42) + string(7u) + string(true)"),
            Ok(json!("427true"))
        );
        assert_eq!(eval("string(b'hi')"), Ok(json!("hi")));
        assert_eq!(eval("string(duration('90s'))"), Ok(json!("90s")));
        assert!(
            eval("string(object.spec.template.spec.containers)")
                .is_err_and(|e| e.to_string().contains("string"))
        );
        assert!(matches!(eval("string(1, 2)"), Err(CelError::Compile(_))));
    }

    #[test]
    fn element_types_are_not_tracked_by_the_checker() {
        // cel-go's checker refuses both; ours sees `dyn` elements, so evaluation fails instead.
        for expr in ["[1, 2][0] + 'a'", "{'a': 1}.a + 'b'"] {
            assert!(matches!(eval(expr), Err(CelError::Eval(_))), "{expr}");
        }
    }

    #[test]
    fn results_the_go_operator_cannot_export_are_exported() {
        // cel-go's native conversion fails on these, so the Go operator exported nothing.
        assert_eq!(eval("[[1, 2], [3]]"), Ok(json!([[1, 2], [3]])));
        assert_eq!(
            eval("[{'a': 1}, {'b': [true]}]"),
            Ok(json!([{"a": 1}, {"b": [true]}]))
        );
        assert_eq!(
            eval("[null, duration('1s')]"),
            Ok(json!([null, 1_000_000_000i64]))
        );
        assert_eq!(
            eval("{'replicas': object.spec.replicas}"),
            Ok(json!({"replicas": 3}))
        );
        // JSON has no infinities: the attribute fails with a clear error instead of the export.
        assert_eq!(
            eval("1.0 / 0.0"),
            Err(CelError::Eval("result inf is not a finite number".into()))
        );
    }

    #[test]
    fn optional_results_export_their_value_or_null() {
        assert_eq!(eval("object.?spec.?replicas"), Ok(json!(3)));
        assert_eq!(eval("object.?spec.?nope"), Ok(Value::Null));
        assert_eq!(eval("optional.of('a')"), Ok(json!("a")));
        assert_eq!(eval("optional.none()"), Ok(Value::Null));
        assert_eq!(eval("object.?status.?nope.orValue(7)"), Ok(json!(7)));
    }

    #[test]
    fn timestamps_keep_their_offset() {
        assert_eq!(
            eval("timestamp('2026-01-01T10:00:00+02:00')"),
            Ok(json!("2026-01-01T10:00:00+02:00"))
        );
        assert_eq!(
            eval("timestamp('2026-01-01T10:00:00.5-05:30')"),
            Ok(json!("2026-01-01T10:00:00.5-05:30"))
        );
        assert_eq!(
            eval("timestamp('2026-01-01T10:00:00Z')"),
            Ok(json!("2026-01-01T10:00:00Z"))
        );
    }

    #[test]
    fn timestamps_durations_and_bytes_convert_like_go() {
        assert_eq!(
            eval("timestamp(object.metadata.creationTimestamp)"),
            Ok(json!("2026-01-02T03:04:05Z"))
        );
        assert_eq!(
            eval("timestamp('2026-01-02T03:04:05.120Z')"),
            Ok(json!("2026-01-02T03:04:05.12Z"))
        );
        assert_eq!(eval("duration('1m30s')"), Ok(json!(90_000_000_000i64)));
        assert_eq!(eval("b'hi'"), Ok(json!("aGk=")));
        assert_eq!(
            eval("timestamp('2026-01-02T03:04:05Z').getFullYear()"),
            Ok(json!(2026))
        );
    }

    #[test]
    fn missing_keys_are_errors_and_prefixes_are_kept() {
        let err = eval("object.spec.missing").unwrap_err();
        assert!(err.to_string().starts_with("eval CEL: "), "{err}");
        assert_eq!(err.to_string(), "eval CEL: no such key: missing");
        assert_eq!(
            eval("1 / 0").unwrap_err().to_string(),
            "eval CEL: division by zero"
        );
        assert_eq!(
            eval("1 % 0").unwrap_err().to_string(),
            "eval CEL: modulus by zero"
        );
        assert_eq!(
            eval("9223372036854775807 + 1").unwrap_err().to_string(),
            "eval CEL: integer overflow"
        );
        assert_eq!(eval(""), Err(CelError::Empty));
        assert!(
            eval("object.spec.(")
                .unwrap_err()
                .to_string()
                .starts_with("compile CEL: ")
        );
        assert_eq!(
            eval("self.spec"),
            Err(CelError::Compile(
                "undeclared reference to 'self' (only 'object' is defined)".into()
            ))
        );
        assert!(
            eval("object.spec.template.spec.containers.map(x, x.name + y)")
                .unwrap_err()
                .to_string()
                .contains("'y'")
        );
    }

    #[test]
    fn only_read_fields_are_converted() {
        let limits = CelLimits::default();
        let p = CelProgram::compile("object.spec.replicas + size(object.metadata.labels)", &limits).unwrap();
        let FieldNeed::Paths(trie) = p.need() else {
            panic!("expected paths")
        };
        assert_eq!(trie.top_level(), ["metadata", "spec"]);
        let whole = CelProgram::compile("size(object)", &limits).unwrap();
        assert_eq!(whole.need(), &FieldNeed::All);
        assert_eq!(
            whole.evaluate(&CelInput::new(&deployment(), whole.need()), &limits),
            Ok(json!(5))
        );
        // Shadowing `object` inside a macro refers to the loop variable, not the object.
        let shadow = CelProgram::compile("[1, 2].map(object, object + 1)", &limits).unwrap();
        assert_eq!(shadow.need(), &FieldNeed::Paths(PathTrie::default()));
        assert_eq!(
            shadow.evaluate(&CelInput::new(&deployment(), shadow.need()), &limits),
            Ok(json!([2, 3]))
        );
    }

    #[test]
    fn sparse_projection_evaluates_like_the_full_object() {
        let limits = CelLimits::default();
        let expressions = [
            "object.spec.replicas",
            "object.spec.template.spec.containers[0].image",
            "object.spec.template.spec.containers.map(c, c.name)",
            "has(object.status.readyReplicas)",
            "has(object.status.nope)",
            "has(object.nope.x)",
            "object.nope",
            "object.metadata.name.x",
            "object.spec.replicas.x",
            "object.metadata.labels['app']",
            "object.metadata.labels.app + object.metadata.name",
            "size(object.metadata)",
            "object.status",
        ];
        for expression in expressions {
            let program = CelProgram::compile(expression, &limits).unwrap();
            let sparse = program.evaluate(&CelInput::new(&deployment(), program.need()), &limits);
            let full = program.evaluate(&CelInput::new(&deployment(), &FieldNeed::All), &limits);
            assert_eq!(sparse, full, "{expression}");
        }
    }

    #[test]
    fn evaluation_is_bounded() {
        let limits = CelLimits {
            max_nesting: 2,
            max_cost: 1_000,
        };
        let err = CelProgram::compile("[1].all(a, [2].all(b, [3].all(c, true)))", &limits).unwrap_err();
        assert!(
            err.to_string().contains("nested 3 deep exceed the limit of 2"),
            "{err}"
        );
        let big = json!({"items": (0..200).collect::<Vec<_>>()});
        let p = CelProgram::compile("object.items.all(a, object.items.exists(b, a == b))", &limits).unwrap();
        let err = p.evaluate(&CelInput::new(&big, p.need()), &limits).unwrap_err();
        assert!(err.to_string().starts_with("eval CEL: estimated cost"), "{err}");
        let small = json!({"items": [1, 2, 3]});
        assert_eq!(
            p.evaluate(&CelInput::new(&small, p.need()), &limits),
            Ok(json!(true))
        );
    }

    #[test]
    fn predicates() {
        let limits = CelLimits::default();
        let object = deployment();
        let input = CelInput::new(&object, &FieldNeed::All);
        let yes = |e: &str| {
            CelProgram::compile(e, &limits)
                .unwrap()
                .evaluate_predicate(&input, &limits)
        };
        assert!(yes("object.metadata.labels.app == 'shop'"));
        assert!(yes("'true'"));
        assert!(!yes("object.metadata.labels.app == 'cart'"));
        assert!(!yes("object.nope == 1"), "errors are no match");
        assert!(!yes("1"), "non-bool is no match");
    }

    #[test]
    fn secret_data_detection() {
        assert!(reads_field("object.data.password", "data"));
        assert!(reads_field("object.DATA['x']", "data"));
        assert!(reads_field("has(object.data)", "data"));
        assert!(!reads_field("object.metadata.name", "data"));
    }
}
