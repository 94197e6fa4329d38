//! `string(x)` with cel-go's result for doubles.
//!
//! cel-go converts a double to a string with Go's `%g` (`string(1234567.0)` is
//! `"1.234567e+06"`, `string(1e-5)` is `"1e-05"`); the `cel` crate prints Rust's shortest decimal
//! form (`"1234567"`, `"0.00001"`). The crate refuses a second overload of `string` for the same
//! argument type, so the compiler renames every one-argument `string` call to [`GO_STRING`],
//! whose single overload formats doubles itself and hands every other argument to the standard
//! `string` overloads. Static checks run on the program as written, before the renaming, so
//! messages still say `string`.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::{CelDouble, CelString, DYN_TYPE};
use cel::common::value::CowVal;
use cel::{Env, ExecutionError};

/// The internal name `string` calls are renamed to. It is not a valid CEL identifier, so no
/// program can call it directly.
const GO_STRING: &str = "string#go";

/// Declares [`GO_STRING`] in `env`, which must already hold the standard library.
pub(super) fn register(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_overload(GO_STRING, "string_go_dyn", vec![DYN_TYPE], go_string)
}

fn go_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    if let [arg] = args.as_slice()
        && let Some(double) = arg.downcast_ref::<CelDouble>()
    {
        return Ok(CowVal::owned(CelString::from(
            kollect_core::model::canonical::format_float_g(*double.inner()),
        )));
    }
    match super::cel::environment().find_overload("string", &args) {
        Some(standard) => standard(args),
        None => Err(ExecutionError::no_such_overload(
            "string",
            args.iter().map(|a| a.get_type().name().to_owned()).collect(),
        )),
    }
}

/// Renames every one-argument global `string` call in `expr` to [`GO_STRING`].
pub(super) fn rewrite(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Expr::Call(call) => {
            if call.func_name == "string" && call.target.is_none() && call.args.len() == 1 {
                GO_STRING.clone_into(&mut call.func_name);
            }
            if let Some(target) = call.target.as_deref_mut() {
                rewrite(target);
            }
            call.args.iter_mut().for_each(rewrite);
        }
        Expr::Comprehension(comp) => {
            for part in [
                &mut comp.iter_range,
                &mut comp.accu_init,
                &mut comp.loop_cond,
                &mut comp.loop_step,
                &mut comp.result,
            ] {
                rewrite(part);
            }
        }
        Expr::Select(select) => rewrite(&mut select.operand),
        Expr::List(list) => list.elements.iter_mut().for_each(rewrite),
        Expr::Map(map) => map.entries.iter_mut().for_each(|e| rewrite_entry(&mut e.expr)),
        Expr::Struct(st) => st.entries.iter_mut().for_each(|e| rewrite_entry(&mut e.expr)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn rewrite_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::MapEntry(e) => {
            rewrite(&mut e.key);
            rewrite(&mut e.value);
        }
        EntryExpr::StructField(f) => rewrite(&mut f.value),
    }
}
