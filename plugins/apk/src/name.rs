//! Package names from a report, checked before any of them can reach an
//! argv.
//!
//! A report is untrusted input: `--allow-untrusted` or `openssl; reboot`
//! must never get to `apk`, even as one argv element. apk-tools ends a name
//! at the first constraint operator (`<`, `>`, `=`, `~`) or repository pin
//! (`@`), and Alpine's abuild allows lowercase letters, digits and `+ - . _`;
//! some Wolfi packages carry uppercase letters. A name must start with a
//! letter or digit: a leading `-` would be an option, and a leading `.` is
//! the convention of virtual packages (`.build-deps`, and the `.caulk-*`
//! ones the plan makes), which no scanner reports.

pub use caulk_sdk::names::{NameError, PackageName};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_real_databases_parse() {
        for good in [
            "musl",
            "libssl3",
            "ca-certificates-bundle",
            "py3-setuptools",
            "libstdc++",
            "gdk-pixbuf2.0",
            "perl-Net-SSLeay",
            "ld-linux_x86-64",
        ] {
            assert_eq!(good.parse::<PackageName>().map(|n| n.to_string()).as_deref(), Ok(good));
        }
    }

    #[test]
    fn hostile_names_are_refused_with_the_reason() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("--allow-untrusted", NameError::Start { found: '-' }),
            (".caulk-openssl", NameError::Start { found: '.' }),
            ("openssl; reboot", NameError::Character { found: ';', at: 7 }),
            ("openssl>=0", NameError::Character { found: '>', at: 7 }),
            ("openssl@edge", NameError::Character { found: '@', at: 7 }),
            ("$(reboot)", NameError::Start { found: '$' }),
            ("so:libc.musl-x86_64.so.1", NameError::Character { found: ':', at: 2 }),
            ("a b", NameError::Character { found: ' ', at: 1 }),
            ("musl\n", NameError::Character { found: '\n', at: 4 }),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<PackageName>().as_ref(), Err(expected), "{input:?}");
        }
        assert_eq!("x".repeat(129).parse::<PackageName>(), Err(NameError::TooLong));
    }
}
