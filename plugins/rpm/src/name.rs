//! Package names from a report, checked before any of them can reach an
//! argv.
//!
//! A report is untrusted input: `--nogpgcheck` or `openssl; reboot` must
//! never get to dnf, even as one argv element. RPM names in the
//! distributions' packaging guidelines use letters, digits and `+ - . _`;
//! a name must start with a letter or digit, so none is read as an option.
//! dnf and zypper read `*`, `?` and `[` in a package argument as a glob and
//! `<`, `>`, `=` as a version constraint, so those are refused too.

pub use caulk_sdk::names::{NameError, PackageName};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_real_databases_parse() {
        for good in
            ["openssl-libs", "glibc", "libstdc++", "python3.11", "perl-Net-SSLeay", "xz_utils", "3proxy"]
        {
            assert_eq!(good.parse::<PackageName>().map(|n| n.to_string()).as_deref(), Ok(good));
        }
    }

    #[test]
    fn hostile_names_are_refused_with_the_reason() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("--nogpgcheck", NameError::Start { found: '-' }),
            ("openssl; reboot", NameError::Character { found: ';', at: 7 }),
            ("openssl>=0", NameError::Character { found: '>', at: 7 }),
            ("open*", NameError::Character { found: '*', at: 4 }),
            ("$(reboot)", NameError::Start { found: '$' }),
            ("/usr/bin/sh", NameError::Start { found: '/' }),
            ("a b", NameError::Character { found: ' ', at: 1 }),
            ("glibc\n", NameError::Character { found: '\n', at: 5 }),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<PackageName>().as_ref(), Err(expected), "{input:?}");
        }
        assert_eq!("x".repeat(129).parse::<PackageName>(), Err(NameError::TooLong));
    }
}
