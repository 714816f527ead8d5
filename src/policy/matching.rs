//! Which `[[api.rule]]` applies to a request, read so that spellings an upstream treats alike meet
//! the same rule: the path with or without one trailing `/`, HEAD where GET is listed (added when
//! the rule compiles), the path's case folded under `case_insensitive_paths`, and methods that are
//! a standard method in the wrong case refused before any rule is read. The request path and
//! `tollgate explain` both call [`matching_rule`].

use std::borrow::Cow;

use http::Method;

use super::Rejection;
use crate::config::{ApiSettings, RuleSettings};
use crate::routing::match_form;

/// The methods RFC 9110 §9 and RFC 5789 define.
const STANDARD: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// RFC 9110 §9.1: methods are case-sensitive, so `delete` is not DELETE, yet Express, Rails and
/// ASP.NET Core run their DELETE handler for it. Such a method is refused rather than matched
/// against rules written for the other one. Other extension methods pass.
pub fn check_method(method: &Method) -> Result<(), Rejection> {
    if STANDARD.contains(method) {
        return Ok(());
    }
    if STANDARD
        .iter()
        .any(|m| m.as_str().eq_ignore_ascii_case(method.as_str()))
    {
        return Err(Rejection::BadMethod);
    }
    Ok(())
}

/// The first rule of the API whose methods and paths match (Anypoint's method & resource
/// conditions), with its index; `None`: the API's defaults apply. `path` is the normalised path.
pub fn matching_rule<'a>(
    api: &'a ApiSettings,
    method: &Method,
    path: &str,
) -> Option<(usize, &'a RuleSettings)> {
    let seen = match_form(path, api.case_insensitive_paths);
    // The other spelling of the trailing slash, made only if a pattern missed the first.
    let mut other: Option<Option<Cow<'_, str>>> = None;
    api.rules.iter().enumerate().find(|(_, rule)| {
        rule.methods.as_ref().is_none_or(|ms| lists(ms, method))
            && rule.paths.as_ref().is_none_or(|ps| {
                ps.is_match(&*seen)
                    || other
                        .get_or_insert_with(|| other_slash(&seen))
                        .as_ref()
                        .is_some_and(|p| ps.is_match(&**p))
            })
    })
}

/// Extension methods compare ignoring case too (the file's are upper-cased when they compile);
/// standard ones reach here only byte-exact (see [`check_method`]).
fn lists(methods: &[Method], method: &Method) -> bool {
    methods
        .iter()
        .any(|m| m == method || m.as_str().eq_ignore_ascii_case(method.as_str()))
}

/// `/orders/1/` for `/orders/1` and the reverse: servers route both to one handler. `/` has none.
fn other_slash(path: &str) -> Option<Cow<'_, str>> {
    match path.strip_suffix('/') {
        Some("") => None,
        Some(trimmed) => Some(Cow::Borrowed(trimmed)),
        None => Some(Cow::Owned(format!("{path}/"))),
    }
}
