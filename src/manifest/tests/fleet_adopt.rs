//! `adopt:` in `convoy.yaml`: the record of Compose projects the fleet owns, and its located
//! errors (a host or stack that does not exist, a project or stack claimed twice).

use super::*;
use crate::model::adopt::Adoption;

const SHOP: &str = "services:\n  web:\n    image: nginx\n";

fn with_fleet(fleet: &str) -> Vec<(&'static str, String)> {
    vec![
        ("convoy.yaml", fleet.to_string()),
        ("stacks/shop/compose.yaml", SHOP.to_string()),
    ]
}

#[test]
fn adoptions_are_read_in_order() {
    let f = with_fleet(
        "fleet: prod\n# kept\nadopt:\n  - {project: shop_v1, host: local, stack: shop}\n",
    );
    let state = ok(&files(&f));
    assert_eq!(
        state.settings.adopted,
        [Adoption {
            project: "shop_v1".into(),
            host: "local".into(),
            stack: "shop".into(),
        }]
    );
    // Without `adopt:` nothing is adopted, and the settings serialise as before.
    let state = ok(&files(&with_fleet("fleet: prod\n")));
    assert!(state.settings.adopted.is_empty());
    assert!(!serde_json::to_string(&state.settings)
        .unwrap()
        .contains("adopted"));
}

#[test]
fn adoption_errors_are_located() {
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nadopt:\n  - {project: shop, host: nowhere, stack: shop}\n"
        ))),
        ["convoy.yaml:3:27: adopt[0].host: unknown host `nowhere` (the hosts are: local)"]
    );
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nadopt:\n  - {project: shop, host: local, stack: shpo}\n"
        ))),
        ["convoy.yaml:3:41: adopt[0].stack: no stack is named `shpo`"]
    );
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nadopt:\n  - project: Shop\n    host: local\n    stack: shop\n    stak: x\n"
        ))),
        [
            "convoy.yaml:3:14: adopt[0].project: a Compose project name is lower-case letters, digits, `_` and `-`",
            "convoy.yaml:6:5: adopt[0].stak: unknown key, did you mean `stack`?",
        ]
    );
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nadopt:\n  - {project: shop, host: local}\n"
        ))),
        ["convoy.yaml:3:6: adopt[0].stack: missing `stack`"]
    );
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nadopt:\n  - {project: a, host: local, stack: shop}\n  - {project: a, host: local, stack: shop}\n"
        ))),
        ["convoy.yaml:4:6: adopt[1]: project `a` on host `local` is adopted twice"]
    );
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nadopt:\n  - {project: a, host: local, stack: shop}\n  - {project: b, host: local, stack: shop}\n"
        ))),
        ["convoy.yaml:4:6: adopt[1]: stack `shop` on host `local` already adopts project `a`"]
    );
    assert_eq!(
        errs(&files(&with_fleet("fleet: prod\nadopt: shop\n"))),
        ["convoy.yaml:2:8: adopt: expected a list of `{project, host, stack}`, found a string"]
    );
}
