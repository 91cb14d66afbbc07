//! Which resources the function may act on: its own account and region, or in central mode the
//! allowed accounts and regions of its partition. Decided before any AWS call, from values that
//! were validated against AWS's patterns; acting elsewhere would change a same-named resource in
//! the wrong place.

use crate::config::Central;
use crate::model::resource::Location;
use std::collections::BTreeSet;

/// Why a resource at `at` is not the function's to act on, or `None` when it is in `home`.
fn out_of_scope(at: &Location, home: Option<&Location>) -> Option<String> {
    let Some(home) = home else {
        return Some(
            "the function's own account and region are unknown, so no resource can be checked \
             against them"
                .to_owned(),
        );
    };
    let differs = if at.partition != home.partition {
        "partition"
    } else if at.account != home.account {
        "account"
    } else if at.region != home.region {
        "region"
    } else {
        return None;
    };
    Some(format!(
        "the resource is in {at}, but this function serves {home} only (the {differs} differs); \
         no AWS call was made"
    ))
}

/// Why a resource at `at` is not the function's to act on, or `None` when it is. `allowed`: the
/// accounts other than its own it may act in, as last read (`None` before the organisation was
/// read, or in single-account mode).
pub(super) fn refusal(
    central: Option<&Central>,
    allowed: Option<&BTreeSet<String>>,
    at: &Location,
    home: Option<&Location>,
) -> Option<String> {
    let Some(central) = central else {
        return out_of_scope(at, home);
    };
    let Some(home) = home else {
        return out_of_scope(at, None);
    };
    if at.partition != home.partition {
        return Some(format!(
            "the resource is in partition {}, but this function runs in {} and roles cannot be \
             assumed across partitions; no AWS call was made",
            at.partition, home.partition
        ));
    }
    if at.account != home.account {
        let inside = allowed.as_ref().is_some_and(|a| a.contains(&at.account));
        if !inside {
            let list = match (&central.accounts, &central.organization_id, allowed) {
                (Some(_), _, _) => "ALLOWED_ACCOUNTS".to_owned(),
                (None, Some(id), Some(_)) => {
                    format!("the ACTIVE accounts of organisation {id}")
                }
                _ => "the organisation's accounts, which could not be read".to_owned(),
            };
            return Some(format!(
                "account {} is not in {list}; no AWS call was made in it",
                at.account
            ));
        }
    }
    if !central.regions.contains(&at.region) {
        return Some(format!(
            "region {} is not in ALLOWED_REGIONS; no AWS call was made",
            at.region
        ));
    }
    None
}
