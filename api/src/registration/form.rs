//! The field paths of the registration form: what a reviewer may name when asking for changes.
//!
//! A path is a section (`publisherInfo`), a field of a section (`contactInfo.email`, the same
//! dotted paths as `submitBlockers` and the timeline's changed fields) or one entry of a list
//! field (`providerDetails.targetUrls[0]`, the entry a section mutation's user error points at
//! with `["targetUrls", "0"]`). Paths are case-sensitive and written exactly so; anything else
//! is refused, so a change request can only point at something the submitter can edit.

use crate::domain::{MAX_SENDERS, MAX_TARGET_URLS};

/// One field of a section: its name and, for a list field, the most entries it can hold.
struct FormField {
    name: &'static str,
    max_entries: Option<usize>,
}

const fn field(name: &'static str) -> FormField {
    FormField {
        name,
        max_entries: None,
    }
}

const fn list(name: &'static str, max_entries: usize) -> FormField {
    FormField {
        name,
        max_entries: Some(max_entries),
    }
}

/// Every section of the draft with its fields, in form order. `scope` is a section that is a
/// single value.
const FORM: &[(&str, &[FormField])] = &[
    (
        "providerDetails",
        &[
            list("senderEmails", MAX_SENDERS),
            list("targetUrls", MAX_TARGET_URLS),
            field("publicKey"),
        ],
    ),
    ("scope", &[]),
    (
        "contactInfo",
        &[field("name"), field("email"), field("phone")],
    ),
    (
        "publisherInfo",
        &[
            field("publisherName"),
            field("websiteUrl"),
            field("supportUrl"),
            field("description"),
        ],
    ),
    (
        "scenarioDetails",
        &[
            field("description"),
            field("actionUsage"),
            field("expectedDailyVolume"),
            field("mailType"),
            field("sendingHistoryWeeks"),
        ],
    ),
    (
        "verificationDetails",
        &[field("reviewerInstructions"), field("sampleEmail")],
    ),
];

/// A path of the registration form, taken apart: a section, a field of it, an entry of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormPath<'a> {
    pub section: &'a str,
    pub field: Option<&'a str>,
    pub entry: Option<usize>,
}

/// Takes `path` apart when it names a section, a field or a list entry of the registration form
/// (see the module documentation). A list index must be written in decimal without leading
/// zeros and lie below the list's maximum length.
pub fn parse_form_path(path: &str) -> Option<FormPath<'_>> {
    let (section, rest) = match path.split_once('.') {
        Some((section, rest)) => (section, Some(rest)),
        None => (path, None),
    };
    let (_, fields) = FORM.iter().find(|(name, _)| *name == section)?;
    let Some(rest) = rest else {
        return Some(FormPath {
            section,
            field: None,
            entry: None,
        });
    };
    let (name, index) = match rest.split_once('[') {
        Some((name, tail)) => (name, Some(tail.strip_suffix(']')?)),
        None => (rest, None),
    };
    let found = fields.iter().find(|f| f.name == name)?;
    let entry = match (index, found.max_entries) {
        (None, _) => None,
        (Some(_), None) => return None,
        (Some(index), Some(max)) => {
            let canonical = index == "0" || !index.starts_with('0');
            let well_formed = canonical
                && !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
                && index.len() <= 3;
            if !well_formed {
                return None;
            }
            Some(index.parse::<usize>().ok().filter(|i| *i < max)?)
        }
    };
    Some(FormPath {
        section,
        field: Some(name),
        entry,
    })
}

/// True when `path` names a section, a field or a list entry of the registration form.
pub fn is_form_path(path: &str) -> bool {
    parse_form_path(path).is_some()
}

/// Every section and field path (no list entries), for messages and documentation.
pub fn form_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for (section, fields) in FORM {
        paths.push((*section).to_owned());
        paths.extend(fields.iter().map(|f| format!("{section}.{}", f.name)));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::diff::changes;
    use crate::registration::draft::{ProviderDraft, fixture::full_draft};

    #[test]
    fn the_form_lists_exactly_the_fields_a_draft_holds() {
        let mut stored: Vec<String> =
            changes(&ProviderDraft::default().to_json(), &full_draft().to_json())
                .into_iter()
                .map(|change| change.path)
                .collect();
        stored.sort();
        let mut listed: Vec<String> = form_paths()
            .into_iter()
            .filter(|path| path.contains('.') || path == "scope")
            .collect();
        listed.sort();
        assert_eq!(listed, stored);
        for path in form_paths() {
            assert!(is_form_path(&path), "{path}");
        }
    }

    #[test]
    fn sections_fields_and_list_entries_are_form_paths() {
        for path in [
            "providerDetails",
            "scope",
            "providerDetails.senderEmails",
            "providerDetails.senderEmails[0]",
            "providerDetails.senderEmails[19]",
            "providerDetails.targetUrls[3]",
            "providerDetails.publicKey",
            "contactInfo.email",
            "publisherInfo.supportUrl",
            "scenarioDetails.mailType",
            "verificationDetails.sampleEmail",
        ] {
            assert!(is_form_path(path), "{path}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let long = format!("providerDetails.{}", "x".repeat(10_000));
        for path in [
            "",
            ".",
            "contact.email",
            "targets[0]",
            "ContactInfo.email",
            "contactInfo.Email",
            "contactInfo.email ",
            " contactInfo.email",
            "contactInfo.email.",
            "contactInfo..email",
            "contactInfo.email[0]",
            "contactInfo.password",
            "scope.value",
            "providerDetails.senderEmails[20]",
            "providerDetails.senderEmails[-1]",
            "providerDetails.senderEmails[01]",
            "providerDetails.senderEmails[+1]",
            "providerDetails.senderEmails[]",
            "providerDetails.senderEmails[1",
            "providerDetails.senderEmails[1][2]",
            "providerDetails.senderEmails[99999999999999999999]",
            "providerDetails.senderEmails.0",
            "providerDetails.senderEmails[٣]",
            "providerDetails.id",
            "__proto__",
            "constructor.prototype",
            "<script>alert(1)</script>",
            "providerDetails.senderEmails\u{0}",
            "provider\u{200B}Details",
            long.as_str(),
        ] {
            assert!(!is_form_path(path), "{path:?}");
        }
    }
}
