//! The CEL functions kube adds to the standard library that Skiff provides: `ext.Strings`
//! (with bounded results) and kube's list library.

use cel::{
    Env, ExecutionError,
    common::{
        types::{CelInt, CelList, CelString},
        value::Val,
    },
};

use super::MAX_STRING_RESULT;

/// kube's `ext.Strings` functions on `string`, with bounded results.
pub(super) fn strings(env: &mut Env) -> Result<(), cel::DeclarationError> {
    cel::add_member_overload!(env, fn char_at: (CelString, CelInt) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn index_of: (CelString, CelString) -> CelInt)?;
    cel::add_member_overload!(env, fn last_index_of: (CelString, CelString) -> CelInt)?;
    cel::add_member_overload!(env, fn lower_ascii: (CelString) -> CelString)?;
    cel::add_member_overload!(env, fn upper_ascii: (CelString) -> CelString)?;
    cel::add_member_overload!(env, fn trim: (CelString) -> CelString)?;
    cel::add_member_overload!(env, fn replace: (CelString, CelString, CelString) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn split: (CelString, CelString) -> CelList)?;
    cel::add_member_overload!(env, fn substring: (CelString, CelInt) -> Result<CelString>)?;
    cel::add_member_overload!(env, fn substring_range: (CelString, CelInt, CelInt) -> Result<CelString>,
        name = "substring")?;
    Ok(())
}

/// kube's list library (`isSorted`, `indexOf`, `lastIndexOf`, `sum`, `min`, `max`).
pub(super) fn lists(env: &mut Env) -> Result<(), cel::DeclarationError> {
    use cel::common::types::{DYN_TYPE, LIST_TYPE};
    env.add_member_overload("isSorted", "list.isSorted()", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload(
        "indexOf",
        "list.indexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list.lastIndexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_last_index_of,
    )?;
    env.add_member_overload("sum", "list.sum()", LIST_TYPE, vec![], list_sum)?;
    env.add_member_overload("min", "list.min()", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list.max()", LIST_TYPE, vec![], list_max)?;
    Ok(())
}

type Args<'b, 'v> = Vec<cel::common::value::CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<cel::common::value::CowVal<'b, 'v>, ExecutionError>;

/// The elements of the list receiver of `function`.
fn elements<'a, 'v>(
    args: &'a Args<'_, 'v>,
    function: &str,
) -> Result<Vec<&'a (dyn Val + 'v)>, ExecutionError> {
    let list = args
        .first()
        .and_then(|l| l.as_ref().as_iterable())
        .ok_or_else(|| ExecutionError::function_error(function, "expected a list"))?;
    let mut out = Vec::new();
    let mut items = list.iter();
    while let Some(item) = items.next() {
        out.push(item);
    }
    Ok(out)
}

fn order(a: &dyn Val, b: &dyn Val, function: &str) -> Result<std::cmp::Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| ExecutionError::function_error(function, "elements are not comparable"))?
        .compare(b)
}

fn is_sorted<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let items = elements(&args, "isSorted")?;
    for pair in items.windows(2) {
        if order(pair[0], pair[1], "isSorted")? == std::cmp::Ordering::Greater {
            return Ok(cel::common::value::CowVal::owned(
                cel::common::types::CelBool::from(false),
            ));
        }
    }
    Ok(cel::common::value::CowVal::owned(
        cel::common::types::CelBool::from(true),
    ))
}

fn position<'b, 'v>(args: Args<'b, 'v>, last: bool) -> Ret<'b, 'v> {
    let function = if last { "lastIndexOf" } else { "indexOf" };
    let items = elements(&args, function)?;
    let needle = args
        .get(1)
        .ok_or_else(|| ExecutionError::function_error(function, "expected an argument"))?;
    let found = if last {
        items.iter().rposition(|i| i.equals(needle.as_ref()))
    } else {
        items.iter().position(|i| i.equals(needle.as_ref()))
    };
    let index = found.map_or(-1, |i| i64::try_from(i).unwrap_or(-1));
    Ok(cel::common::value::CowVal::owned(CelInt::from(index)))
}

fn list_index_of<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    position(args, false)
}

fn list_last_index_of<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    position(args, true)
}

fn list_sum<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let items = elements(&args, "sum")?;
    let Some((first, rest)) = items.split_first() else {
        return Ok(cel::common::value::CowVal::owned(CelInt::from(0)));
    };
    let mut total: Box<dyn Val + 'v> = first.clone_as_boxed();
    for item in rest {
        let next = total
            .as_adder()
            .ok_or_else(|| ExecutionError::function_error("sum", "elements cannot be added"))?
            .add(*item)?
            .as_ref()
            .clone_as_boxed();
        total = next;
    }
    Ok(cel::common::value::CowVal::from(total))
}

fn extreme<'b, 'v>(args: Args<'b, 'v>, function: &str, want: std::cmp::Ordering) -> Ret<'b, 'v> {
    let items = elements(&args, function)?;
    let mut best = *items.first().ok_or_else(|| {
        ExecutionError::function_error(function, format!("{function} called on an empty list"))
    })?;
    for item in &items[1..] {
        if order(*item, best, function)? == want {
            best = *item;
        }
    }
    Ok(cel::common::value::CowVal::from(best.clone_as_boxed()))
}

fn list_min<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    extreme(args, "min", std::cmp::Ordering::Less)
}

fn list_max<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    extreme(args, "max", std::cmp::Ordering::Greater)
}

fn out_of_range(function: &str, idx: i64) -> ExecutionError {
    ExecutionError::function_error(function, format!("index out of range: {idx}"))
}

fn char_at(this: &CelString<'_>, idx: &CelInt) -> Result<CelString<'static>, ExecutionError> {
    let idx = *idx.inner();
    let len = this.chars().count() as i64;
    if idx < 0 || idx > len {
        return Err(out_of_range("charAt", idx));
    }
    Ok(usize::try_from(idx)
        .ok()
        .and_then(|i| this.chars().nth(i))
        .map(|c| c.to_string())
        .unwrap_or_default()
        .into())
}

fn index_of(this: &CelString<'_>, needle: &CelString<'_>) -> CelInt {
    let hay: &str = this;
    let needle: &str = needle;
    hay.find(needle)
        .map_or(-1, |byte| hay[..byte].chars().count() as i64)
        .into()
}

fn last_index_of(this: &CelString<'_>, needle: &CelString<'_>) -> CelInt {
    let hay: &str = this;
    let needle: &str = needle;
    hay.rfind(needle)
        .map_or(-1, |byte| hay[..byte].chars().count() as i64)
        .into()
}

fn lower_ascii(this: &CelString<'_>) -> CelString<'static> {
    this.to_ascii_lowercase().into()
}

fn upper_ascii(this: &CelString<'_>) -> CelString<'static> {
    this.to_ascii_uppercase().into()
}

fn trim(this: &CelString<'_>) -> CelString<'static> {
    this.trim().to_owned().into()
}

fn replace(
    this: &CelString<'_>,
    from: &CelString<'_>,
    to: &CelString<'_>,
) -> Result<CelString<'static>, ExecutionError> {
    let hay: &str = this;
    let from: &str = from;
    let to: &str = to;
    let count = if from.is_empty() {
        hay.chars().count() + 1
    } else {
        hay.matches(from).count()
    };
    let size = hay.len().saturating_add(count.saturating_mul(to.len()));
    if size > MAX_STRING_RESULT {
        return Err(ExecutionError::function_error(
            "replace",
            "result exceeds the size limit",
        ));
    }
    Ok(hay.replace(from, to).into())
}

fn split(this: &CelString<'_>, sep: &CelString<'_>) -> CelList<'static> {
    let hay: &str = this;
    let sep: &str = sep;
    let parts: Vec<&str> = if sep.is_empty() {
        hay.char_indices()
            .map(|(i, c)| &hay[i..i + c.len_utf8()])
            .collect()
    } else {
        hay.split(sep).collect()
    };
    parts
        .into_iter()
        .map(|s| Box::new(CelString::from(s.to_owned())) as Box<dyn Val>)
        .collect::<Vec<_>>()
        .into()
}

fn substring(this: &CelString<'_>, start: &CelInt) -> Result<CelString<'static>, ExecutionError> {
    let len = this.chars().count() as i64;
    substring_range(this, start, &CelInt::from(len))
}

fn substring_range(
    this: &CelString<'_>,
    start: &CelInt,
    end: &CelInt,
) -> Result<CelString<'static>, ExecutionError> {
    let (start, end) = (*start.inner(), *end.inner());
    let len = this.chars().count() as i64;
    if start > end {
        return Err(ExecutionError::function_error(
            "substring",
            format!("invalid substring range. start: {start}, end: {end}"),
        ));
    }
    if start < 0 || start > len {
        return Err(out_of_range("substring", start));
    }
    if end > len {
        return Err(out_of_range("substring", end));
    }
    let (start, count) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end - start).unwrap_or(0),
    );
    Ok(this
        .chars()
        .skip(start)
        .take(count)
        .collect::<String>()
        .into())
}
