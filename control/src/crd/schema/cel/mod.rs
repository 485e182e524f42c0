//! `x-kubernetes-validations`: CEL rules compiled once with the schema and evaluated with
//! `self` (and `oldSelf` for transition rules) bound to the value at their node, with
//! apiextensions-apiserver's checks and messages.
//!
//! The CEL engine is the `cel` crate (cel-rust). It parses (with a recursion limit) but does
//! not type-check, so a rule naming a field the schema lacks fails when evaluated rather than
//! when the CRD is created; it has no cost accounting, so the cost of each evaluation is
//! estimated up front from the rule's size, its comprehension nesting and the size of the
//! values it sees, and charged against kube's per-call limit and per-object budget. The
//! string functions are Skiff's (kube's `ext.Strings` subset, with bounded results): the
//! crate's own `replace` could grow strings without bound.

use std::sync::{Arc, LazyLock};

use cel::Env;

/// kube's per-evaluation cost limit (celconfig.PerCallLimit).
const PER_CALL_LIMIT: u64 = 1_000_000;
/// kube's cost budget for all the rules of one object (celconfig.RuntimeCELCostBudget).
const RUNTIME_BUDGET: u64 = 10_000_000;
/// The longest rule or messageExpression accepted (Skiff's bound).
const MAX_EXPRESSION_LEN: usize = 4096;
/// The deepest nesting of brackets accepted in an expression (Skiff's bound: the crate's
/// parser recurses deeply per level).
const MAX_BRACKET_DEPTH: usize = 32;
/// The parser's recursion limit (cel-go's default is 250).
const MAX_PARSE_DEPTH: u16 = 64;
/// The deepest expression tree accepted (evaluation recurses over it).
const MAX_AST_DEPTH: usize = 100;
/// The stack CEL is parsed and evaluated on: the crate's parser and interpreter recurse,
/// with large frames in debug builds; tokio's worker threads have 2 MiB.
const CEL_STACK: usize = 64 << 20;
/// kube's limit on an evaluated messageExpression (celconfig).
const MAX_MESSAGE_LEN: usize = 5 * 1024;
/// The longest string a CEL string function may produce.
const MAX_STRING_RESULT: usize = 1 << 20;
/// Values heavier than this (items, members and string size) are not given to CEL.
const MAX_WEIGHT: usize = 1_000_000;

const SUPPORTED_REASONS: [&str; 4] = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];
mod compile;
mod eval;
mod library;
mod value;

pub(crate) use compile::{Rule, check_old_self, compile_rules};
pub(crate) use eval::{Budget, validate, validate_default};

/// The environment every rule is compiled and evaluated in: CEL's standard library,
/// optional values, and kube's string functions.
static ENV: LazyLock<Option<Arc<Env>>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(library::strings).ok()?;
    env.add_extension(library::lists).ok()?;
    Some(Arc::new(env))
});
/// Run `f` on a thread with a stack large enough for the CEL crate's recursion; None if
/// the thread could not be started or `f` panicked.
pub(crate) fn on_cel_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel".to_owned())
            .stack_size(CEL_STACK)
            .spawn_scoped(scope, f)
            .ok()?
            .join()
            .ok()
    })
}
