//! Package names as package indexes compare them.

/// PEP 503 normalisation: runs of `-`, `_` and `.` become one `-`, and the
/// result is lowercased (`re.sub(r"[-_.]+", "-", name).lower()`), which is
/// how pip, PyPI and `packaging.utils.canonicalize_name` compare names.
///
/// It applies to any string, valid distribution name or not, so that names
/// read from an image compare the way pip compares them; leading and
/// trailing separators are kept, as in the PEP.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separators = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separators {
                out.push('-');
            }
            in_separators = true;
        } else {
            out.extend(c.to_lowercase());
            in_separators = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::pep503;

    #[test]
    fn runs_of_separators_become_one_dash_and_case_folds() {
        assert_eq!(pep503("Jinja2"), "jinja2");
        assert_eq!(pep503("typing_extensions"), "typing-extensions");
        assert_eq!(pep503("zope.interface"), "zope-interface");
        assert_eq!(pep503("a__-.b"), "a-b");
        assert_eq!(pep503("A-_-B.-_C"), "a-b-c");
        assert_eq!(pep503("friendly-bard"), "friendly-bard");
        assert_eq!(pep503("FrIeNdLy-._.-bArD"), "friendly-bard");
    }

    #[test]
    fn ends_and_non_ascii_follow_the_pep_regex() {
        // `re.sub(r"[-_.]+", "-", "_x.").lower()` is "-x-".
        assert_eq!(pep503("_x."), "-x-");
        assert_eq!(pep503(""), "");
        assert_eq!(pep503("..."), "-");
        // Python's str.lower() folds non-ASCII letters too.
        assert_eq!(pep503("ÉCOLE_Ünï"), "école-ünï");
    }
}
