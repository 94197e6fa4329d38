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
        return Ok(CowVal::owned(CelString::from(format_g(*double.inner()))));
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

/// Go's `fmt.Sprintf("%g", f)`: the shortest digits that read back as `f`, in exponent form
/// (`1.5e+06`, `1e-05`, at least two exponent digits) when the decimal exponent is below -4 or
/// at least 6, otherwise in plain decimal form; `+Inf`, `-Inf` and `NaN` for the rest.
pub(crate) fn format_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` and `Display` both print the shortest round-trip digits, as Go's precision
    // -1 does; only the choice of form and the exponent's spelling differ.
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if f == 0.0 || (-4..6).contains(&exponent) {
        return f.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::format_g;

    #[test]
    fn doubles_format_as_go_percent_g() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (100.0, "100"),
            (123456.0, "123456"),
            (999999.9999, "999999.9999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (-1234567.5, "-1.2345675e+06"),
            (123456789.0, "1.23456789e+08"),
            (1e20, "1e+20"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (-4.5e-3, "-0.0045"),
            (1e-5, "1e-05"),
            (1.5e-300, "1.5e-300"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(format_g(*f), *want, "{f:e}");
        }
    }
}
