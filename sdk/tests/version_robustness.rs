//! No input makes the comparators panic, and every refusal names its input.

mod version_common;

use caulk_sdk::version::{Scheme, VersionError, compare, is_fixed_by, with_epoch_of};
use version_common::Rng;

const SCHEMES: [Scheme; 4] = [Scheme::Deb, Scheme::Rpm, Scheme::Apk, Scheme::Python];

#[test]
fn random_garbage_never_panics() {
    let pieces = [
        "0",
        "1",
        "9",
        "00",
        "18446744073709551616",
        ".",
        "~",
        "^",
        "+",
        "-",
        ":",
        "!",
        "_",
        "a",
        "Z",
        "r",
        "-r",
        "_p",
        "_rc",
        "~ab",
        "v",
        "dev",
        "post",
        " ",
        "\t",
        "\0",
        "\u{7f}",
        "é",
        "☃",
        "\u{200b}",
    ];
    let mut rng = Rng::new(0xbad1);
    for _ in 0..20_000 {
        let a = rng.string(&pieces, 10);
        let b = rng.string(&pieces, 10);
        for scheme in SCHEMES {
            for result in [
                compare(scheme, &a, &b).map(|_| ()),
                is_fixed_by(scheme, &a, &b).map(|_| ()),
                with_epoch_of(scheme, &a, &b).map(|_| ()),
            ] {
                if let Err(VersionError::Invalid { version, .. }) = &result {
                    assert!(version == &a || version == &b, "{result:?}");
                }
            }
        }
    }
}

#[test]
fn huge_versions_are_fine() {
    let long = "9".repeat(100_000);
    let longer = format!("1{}", "0".repeat(100_000));
    for scheme in SCHEMES {
        // Whatever the answer, it comes back without a panic or a hang.
        let _ = compare(scheme, &long, &longer);
    }
    assert_eq!(compare(Scheme::Deb, &long, &longer).unwrap(), std::cmp::Ordering::Less);
    assert_eq!(compare(Scheme::Rpm, &long, &longer).unwrap(), std::cmp::Ordering::Less);
}
