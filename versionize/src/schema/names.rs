//! Type names inside type names: `Vec<a::Ring<a::RxDesc>>` mentions `a::Ring<a::RxDesc>`
//! and `a::RxDesc`, but `b::a::RxDesc` does not mention `a::RxDesc`.

use std::collections::BTreeMap;

/// Characters that continue a path: an occurrence of a name is whole only when neither
/// neighbour is one.
fn continues_path(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == ':'
}

/// Byte offsets of the whole occurrences of `name` in `text`.
fn occurrences<'t>(text: &'t str, name: &'t str) -> impl Iterator<Item = usize> + 't {
    text.match_indices(name).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        (!before.is_some_and(continues_path) && !after.is_some_and(continues_path)).then_some(at)
    })
}

/// The keys of `types` that `text` mentions as whole names.
pub(super) fn mentioned<'k, V>(text: &str, types: &'k BTreeMap<String, V>) -> Vec<&'k str> {
    types
        .keys()
        .filter(|name| !name.is_empty() && occurrences(text, name).next().is_some())
        .map(String::as_str)
        .collect()
}

/// `text` with every whole occurrence of the path `old` replaced by `new`.
pub(super) fn replace(text: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for at in occurrences(text, old) {
        out.push_str(&text[copied..at]);
        out.push_str(new);
        copied = at + old.len();
    }
    out.push_str(&text[copied..]);
    out
}

/// `text` with the module path `old` replaced by `new` at the start of every whole path
/// that goes through it: `a::net` renames `a::net::Config` and `a::net::rx::Desc`.
pub(super) fn replace_module(text: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        return text.to_owned();
    }
    let old = format!("{old}::");
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(&old) {
        if text[..at].chars().next_back().is_some_and(continues_path) || at < copied {
            continue;
        }
        out.push_str(&text[copied..at]);
        out.push_str(new);
        out.push_str("::");
        copied = at + old.len();
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_mentioned_whole_paths_only() {
        let types: BTreeMap<String, ()> = [
            "a::RxDesc",
            "a::Ring<a::RxDesc>",
            "a::Rx",
            "b::a::RxDesc",
            "a::RxDescriptor",
        ]
        .into_iter()
        .map(|name| (name.to_owned(), ()))
        .collect();
        assert_eq!(
            mentioned("Vec<a::Ring<a::RxDesc>>", &types),
            ["a::Ring<a::RxDesc>", "a::RxDesc"]
        );
        assert_eq!(mentioned("[b::a::RxDesc; 4]", &types), ["b::a::RxDesc"]);
        assert_eq!(mentioned("(a::Rx, u8)", &types), ["a::Rx"]);
        assert!(mentioned("u8", &types).is_empty());
    }

    #[test]
    fn test_names_replace_whole_paths_only() {
        assert_eq!(
            replace(
                "Vec<a::Ring<a::Old>>, b::a::Old, a::Older",
                "a::Old",
                "c::New"
            ),
            "Vec<a::Ring<c::New>>, b::a::Old, a::Older"
        );
        assert_eq!(replace("a::Old", "a::Old", "c::New"), "c::New");
        assert_eq!(replace("x", "", "y"), "x");
    }

    #[test]
    fn test_names_non_ascii_text_never_panics() {
        let types: BTreeMap<String, ()> = [("é::Ä".to_owned(), ())].into_iter().collect();
        assert_eq!(mentioned("Vec<é::Ä>", &types), ["é::Ä"]);
        assert!(mentioned("xé::Ä", &types).is_empty());
        assert_eq!(replace("ü<é::Ä>ß", "é::Ä", "a::B"), "ü<a::B>ß");
        assert_eq!(replace_module("ü<é::Ä>", "é", "a"), "ü<a::Ä>");
    }

    #[test]
    fn test_names_replace_module_prefix_only() {
        assert_eq!(
            replace_module(
                "Vec<a::net::Config>, b::a::net::Config, a::network::X",
                "a::net",
                "a::dev::net"
            ),
            "Vec<a::dev::net::Config>, b::a::net::Config, a::network::X"
        );
        assert_eq!(replace_module("a::net", "a::net", "b"), "a::net");
    }
}
