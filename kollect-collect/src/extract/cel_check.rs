//! A static check of CEL programs before they run, with cel-go's meaning: unknown functions,
//! wrong arity and operand types that are wrong whatever the object holds are compile errors
//! ("undeclared reference to 'frobnicate'", "found no matching overload for '_*_' applied to
//! '(string, int)'"), as cel-go's type-checker reports them.
//!
//! The `cel` crate parses and interprets but has no checker, so this one walks the parsed AST.
//! It knows the types of literals, operators and the functions the environment registers;
//! anything read from `object` is `dyn` and accepted, so it never refuses a program cel-go's
//! checker would accept for a `dyn`-typed object.

use cel::common::ast::{EntryExpr, Expr, LiteralValue};

/// A statically known type, or `Dyn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Bool,
    Null,
    List,
    Map,
    Timestamp,
    Duration,
    Type,
    Dyn,
}

impl Ty {
    /// cel-go's spelling in messages.
    fn name(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Bool => "bool",
            Ty::Null => "null_type",
            Ty::List => "list(dyn)",
            Ty::Map => "map(dyn, dyn)",
            Ty::Timestamp => "google.protobuf.Timestamp",
            Ty::Duration => "google.protobuf.Duration",
            Ty::Type => "type",
            Ty::Dyn => "dyn",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }
}

/// Which receivers a member function takes.
#[derive(Debug, Clone, Copy)]
enum Receiver {
    String,
    List,
    StringOrList,
    Sized,
    Time,
    Optional,
}

impl Receiver {
    fn accepts(self, ty: Ty) -> bool {
        ty == Ty::Dyn
            || match self {
                Receiver::String => ty == Ty::String,
                Receiver::List => ty == Ty::List,
                Receiver::StringOrList => matches!(ty, Ty::String | Ty::List),
                Receiver::Sized => matches!(ty, Ty::String | Ty::Bytes | Ty::List | Ty::Map),
                Receiver::Time => matches!(ty, Ty::Timestamp | Ty::Duration),
                // Optionals are not tracked: any receiver may be one.
                Receiver::Optional => true,
            }
    }
}

/// Member functions: name, receivers, allowed argument counts, result.
const MEMBERS: &[(&str, Receiver, &[usize], Ty)] = &[
    ("contains", Receiver::String, &[1], Ty::Bool),
    ("startsWith", Receiver::String, &[1], Ty::Bool),
    ("endsWith", Receiver::String, &[1], Ty::Bool),
    ("matches", Receiver::String, &[1], Ty::Bool),
    ("size", Receiver::Sized, &[0], Ty::Int),
    ("charAt", Receiver::String, &[1], Ty::String),
    ("indexOf", Receiver::String, &[1, 2], Ty::Int),
    ("lastIndexOf", Receiver::String, &[1, 2], Ty::Int),
    ("lowerAscii", Receiver::String, &[0], Ty::String),
    ("upperAscii", Receiver::String, &[0], Ty::String),
    ("replace", Receiver::String, &[2, 3], Ty::String),
    ("split", Receiver::String, &[1, 2], Ty::List),
    ("substring", Receiver::String, &[1, 2], Ty::String),
    ("trim", Receiver::String, &[0], Ty::String),
    ("format", Receiver::String, &[1], Ty::String),
    ("reverse", Receiver::StringOrList, &[0], Ty::Dyn),
    ("join", Receiver::List, &[0, 1], Ty::String),
    ("slice", Receiver::List, &[2], Ty::List),
    ("flatten", Receiver::List, &[0, 1], Ty::List),
    ("distinct", Receiver::List, &[0], Ty::List),
    ("sort", Receiver::List, &[0], Ty::List),
    ("sortBy", Receiver::List, &[2], Ty::List),
    ("getFullYear", Receiver::Time, &[0, 1], Ty::Int),
    ("getMonth", Receiver::Time, &[0, 1], Ty::Int),
    ("getDayOfYear", Receiver::Time, &[0, 1], Ty::Int),
    ("getDayOfMonth", Receiver::Time, &[0, 1], Ty::Int),
    ("getDate", Receiver::Time, &[0, 1], Ty::Int),
    ("getDayOfWeek", Receiver::Time, &[0, 1], Ty::Int),
    ("getHours", Receiver::Time, &[0, 1], Ty::Int),
    ("getMinutes", Receiver::Time, &[0, 1], Ty::Int),
    ("getSeconds", Receiver::Time, &[0, 1], Ty::Int),
    ("getMilliseconds", Receiver::Time, &[0, 1], Ty::Int),
    ("hasValue", Receiver::Optional, &[0], Ty::Bool),
    ("value", Receiver::Optional, &[0], Ty::Dyn),
    ("orValue", Receiver::Optional, &[1], Ty::Dyn),
    ("or", Receiver::Optional, &[1], Ty::Dyn),
];

/// Global functions (namespaced ones with their namespace): name, argument counts, result.
const GLOBALS: &[(&str, &[usize], Ty)] = &[
    ("size", &[1], Ty::Int),
    ("int", &[1], Ty::Int),
    ("uint", &[1], Ty::Uint),
    ("double", &[1], Ty::Double),
    ("string", &[1], Ty::String),
    ("bytes", &[1], Ty::Bytes),
    ("bool", &[1], Ty::Bool),
    ("dyn", &[1], Ty::Dyn),
    ("type", &[1], Ty::Type),
    ("timestamp", &[1], Ty::Timestamp),
    ("duration", &[1], Ty::Duration),
    ("matches", &[2], Ty::Bool),
    ("math.ceil", &[1], Ty::Double),
    ("math.floor", &[1], Ty::Double),
    ("math.round", &[1], Ty::Double),
    ("math.trunc", &[1], Ty::Double),
    ("math.sqrt", &[1], Ty::Double),
    ("math.abs", &[1], Ty::Dyn),
    ("math.sign", &[1], Ty::Dyn),
    ("math.isInf", &[1], Ty::Bool),
    ("math.isNaN", &[1], Ty::Bool),
    ("math.isFinite", &[1], Ty::Bool),
    ("math.bitAnd", &[2], Ty::Dyn),
    ("math.bitOr", &[2], Ty::Dyn),
    ("math.bitXor", &[2], Ty::Dyn),
    ("math.bitNot", &[1], Ty::Dyn),
    ("math.bitShiftLeft", &[2], Ty::Dyn),
    ("math.bitShiftRight", &[2], Ty::Dyn),
    // `math.greatest(..)` and `math.least(..)` are macros over these: one argument, two, or a
    // list of more.
    ("math.@max", &[1, 2], Ty::Dyn),
    ("math.@min", &[1, 2], Ty::Dyn),
    ("base64.encode", &[1], Ty::String),
    ("base64.decode", &[1], Ty::Bytes),
    ("strings.quote", &[1], Ty::String),
    ("lists.range", &[1], Ty::List),
    ("optional.of", &[1], Ty::Dyn),
    ("optional.ofNonZeroValue", &[1], Ty::Dyn),
    ("optional.none", &[0], Ty::Dyn),
];

/// The namespaces of [`GLOBALS`] (`math.ceil(x)` parses as a call on the identifier `math`).
pub(super) const NAMESPACES: [&str; 5] = ["math", "base64", "strings", "lists", "optional"];

/// Type denotations a program may use as values (`type(x) == int`).
pub(super) fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "bool" | "bytes" | "double" | "int" | "list" | "map" | "null_type" | "string" | "type" | "uint"
    )
}

/// Checks `expr`; the error is cel-go's message for the first problem found.
pub(super) fn check(expr: &Expr) -> Result<(), String> {
    Checker { scope: Vec::new() }.infer(expr).map(|_| ())
}

struct Checker {
    /// Comprehension variables in scope.
    scope: Vec<String>,
}

fn no_overload(function: &str, receiver: Option<Ty>, args: &[Ty]) -> String {
    let list = args.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
    match receiver {
        Some(receiver) => format!(
            "found no matching overload for '{function}' applied to '{}.({list})'",
            receiver.name()
        ),
        None => format!("found no matching overload for '{function}' applied to '({list})'"),
    }
}

fn undeclared(name: &str) -> String {
    format!("undeclared reference to '{name}' (in container '')")
}

impl Checker {
    fn infer(&mut self, expr: &Expr) -> Result<Ty, String> {
        match expr {
            Expr::Literal(literal) => Ok(match literal {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) if is_type_name(name) && !self.scope.contains(name) => Ok(Ty::Type),
            // Variables (checked elsewhere) and fields read from them are dynamic.
            Expr::Ident(_) | Expr::Unspecified => Ok(Ty::Dyn),
            Expr::Select(select) => {
                self.infer(&select.operand.expr)?;
                Ok(if select.test { Ty::Bool } else { Ty::Dyn })
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.infer(&element.expr)?;
                }
                Ok(Ty::List)
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.entry(&entry.expr)?;
                }
                Ok(Ty::Map)
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    self.entry(&entry.expr)?;
                }
                Ok(Ty::Dyn)
            }
            Expr::Comprehension(comp) => {
                self.infer(&comp.iter_range.expr)?;
                self.infer(&comp.accu_init.expr)?;
                let before = self.scope.len();
                self.scope.push(comp.iter_var.clone());
                self.scope.push(comp.accu_var.clone());
                if let Some(second) = &comp.iter_var2 {
                    self.scope.push(second.clone());
                }
                let checked = [&comp.loop_cond, &comp.loop_step, &comp.result]
                    .into_iter()
                    .try_for_each(|part| self.infer(&part.expr).map(|_| ()));
                self.scope.truncate(before);
                checked.map(|()| Ty::Dyn)
            }
            Expr::Call(call) => {
                let namespace = match call.target.as_deref().map(|t| &t.expr) {
                    Some(Expr::Ident(ns))
                        if NAMESPACES.contains(&ns.as_str()) && !self.scope.contains(ns) =>
                    {
                        Some(ns.as_str())
                    }
                    _ => None,
                };
                let args = call
                    .args
                    .iter()
                    .map(|a| self.infer(&a.expr))
                    .collect::<Result<Vec<_>, _>>()?;
                match (namespace, &call.target) {
                    (Some(ns), _) => global(&format!("{ns}.{}", call.func_name), &args),
                    (None, Some(target)) => {
                        let receiver = self.infer(&target.expr)?;
                        member(&call.func_name, receiver, &args)
                    }
                    (None, None)
                        if call.func_name.starts_with('_')
                            || call.func_name.starts_with('@')
                            || call.func_name.ends_with('_') =>
                    {
                        operator(&call.func_name, &args)
                    }
                    (None, None) => global(&call.func_name, &args),
                }
            }
        }
    }

    fn entry(&mut self, entry: &EntryExpr) -> Result<(), String> {
        match entry {
            EntryExpr::MapEntry(e) => {
                self.infer(&e.key.expr)?;
                self.infer(&e.value.expr)?;
            }
            EntryExpr::StructField(f) => {
                self.infer(&f.value.expr)?;
            }
        }
        Ok(())
    }
}

fn global(name: &str, args: &[Ty]) -> Result<Ty, String> {
    let Some((_, arities, result)) = GLOBALS.iter().find(|(n, ..)| *n == name) else {
        return Err(undeclared(name));
    };
    if !arities.contains(&args.len()) {
        return Err(no_overload(name, None, args));
    }
    Ok(*result)
}

fn member(name: &str, receiver: Ty, args: &[Ty]) -> Result<Ty, String> {
    let overloads: Vec<_> = MEMBERS.iter().filter(|(n, ..)| *n == name).collect();
    if overloads.is_empty() {
        return Err(undeclared(name));
    }
    overloads
        .iter()
        .find(|(_, accepts, arities, _)| accepts.accepts(receiver) && arities.contains(&args.len()))
        .map(|(.., result)| *result)
        .ok_or_else(|| no_overload(name, Some(receiver), args))
}

/// Operators, typed as cel-go's standard declarations type them.
fn operator(name: &str, args: &[Ty]) -> Result<Ty, String> {
    use Ty::{Bool, Bytes, Double, Duration, Dyn, Int, List, Map, String, Timestamp, Uint};
    let fail = || Err(no_overload(name, None, args));
    match (name, args) {
        (_, args) if args.contains(&Dyn) && !matches!(name, "_?_:_") => Ok(match name {
            "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_&&_" | "_||_" | "!_" | "@in" => Bool,
            _ => Dyn,
        }),
        ("_==_" | "_!=_", [_, _]) => Ok(Bool),
        ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => {
            let comparable = (a.is_numeric() && b.is_numeric())
                || (a == b && matches!(a, String | Bytes | Bool | Timestamp | Duration));
            if comparable { Ok(Bool) } else { fail() }
        }
        ("_&&_" | "_||_", [Bool, Bool]) | ("!_", [Bool]) | ("@not_strictly_false", [_]) => Ok(Bool),
        ("_+_", [a, b]) if a == b && matches!(a, Int | Uint | Double | String | Bytes | List | Duration) => {
            Ok(*a)
        }
        ("_+_", [Timestamp, Duration] | [Duration, Timestamp]) => Ok(Timestamp),
        ("_-_", [a, b]) if a == b && matches!(a, Int | Uint | Double | Duration) => Ok(*a),
        ("_-_", [Timestamp, Timestamp]) => Ok(Duration),
        ("_-_", [Timestamp, Duration]) => Ok(Timestamp),
        ("_*_" | "_/_", [a, b]) if a == b && a.is_numeric() => Ok(*a),
        ("_%_", [a, b]) if a == b && matches!(a, Int | Uint) => Ok(*a),
        ("-_", [a]) if matches!(a, Int | Double) => Ok(*a),
        ("_[_]", [List, Int | Uint] | [Map, _]) => Ok(Dyn),
        ("@in", [_, List | Map]) => Ok(Bool),
        ("_?_:_", [cond, a, b]) => {
            if !matches!(cond, Bool | Dyn) {
                return fail();
            }
            Ok(if a == b { *a } else { Dyn })
        }
        // Optional selection and indexing.
        ("_?._" | "_[?_]", _) => Ok(Dyn),
        _ => fail(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(source: &str) -> Result<(), String> {
        let program = cel::Env::stdlib().compile(source).map_err(|e| e.to_string())?;
        check(&program.expression().expr)
    }

    #[test]
    fn refuses_what_cel_go_refuses() {
        for (source, expected) in [
            (
                "frobnicate(1)",
                "undeclared reference to 'frobnicate' (in container '')",
            ),
            (
                "object.frob()",
                "undeclared reference to 'frob' (in container '')",
            ),
            (
                "quantity('1')",
                "undeclared reference to 'quantity' (in container '')",
            ),
            (
                "math.nope(1)",
                "undeclared reference to 'math.nope' (in container '')",
            ),
            (
                "'a' * 3",
                "found no matching overload for '_*_' applied to '(string, int)'",
            ),
            (
                "-1 * 5u",
                "found no matching overload for '_*_' applied to '(int, uint)'",
            ),
            (
                "1 + 1.0",
                "found no matching overload for '_+_' applied to '(int, double)'",
            ),
            (
                "size(1, 2)",
                "found no matching overload for 'size' applied to '(int, int)'",
            ),
            (
                "'a'.contains()",
                "found no matching overload for 'contains' applied to 'string.()'",
            ),
            (
                "1.contains('a')",
                "found no matching overload for 'contains' applied to 'int.(string)'",
            ),
            (
                "1 && true",
                "found no matching overload for '_&&_' applied to '(int, bool)'",
            ),
            (
                "'a' < 1",
                "found no matching overload for '_<_' applied to '(string, int)'",
            ),
            ("-(1u)", "found no matching overload for '-_' applied to '(uint)'"),
        ] {
            assert_eq!(checked(source), Err(expected.to_owned()), "{source}");
        }
    }

    #[test]
    fn accepts_dynamic_and_well_typed_programs() {
        for source in [
            "object.spec.replicas * 2",
            "object.metadata.name + '-x'",
            "size(object.spec.containers) > 1",
            "1 < 1.5 && 2u > 1",
            "1 == 1.0",
            "[1, 2].map(x, x * 2)",
            "object.spec.containers.exists(c, c.name.startsWith('a'))",
            "timestamp('2026-01-01T00:00:00Z') + duration('1h')",
            "has(object.status) ? object.status.x : 0",
            "math.ceil(1.2) + 1.0",
            "'a,b'.split(',').join('-')",
            "type(1) == int",
            "object.?spec.orValue(1)",
            "[1, 2].reverse()",
        ] {
            assert_eq!(checked(source), Ok(()), "{source}");
        }
    }
}
