//! Walking a parsed card (Adaptive Card or legacy MessageCard) for its actions: which URLs they
//! open or call, where they sit in the card, and their labels; plus the per-URL rules (https and
//! under a registered target, deep link) and the button-label rule.

use serde_json::{Map, Value};
use url::{Host, Url};

use super::domains::is_same_or_subdomain;
use crate::domain::{host_reads_the_same, naive_host};

/// Deepest container nesting the walker follows. serde_json already refuses input nested more
/// than 128 levels, so this only bounds work on cards between the two; a card deeper than this
/// is reported (its deeper actions are not trusted to be checked).
pub const MAX_CARD_DEPTH: usize = 64;

/// One URL carried by an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionUrl {
    /// JSON path of the action in the card, e.g. `actions[1].card.actions[0]`.
    pub path: String,
    /// The action's `type` (Adaptive) or `@type` (MessageCard) as written.
    pub action_type: String,
    /// Where the URL sits inside the action: `url`, `target` or `targets[0].uri`.
    pub field: String,
    /// The URL as written in the card (placeholders such as `{{input.value}}` untouched);
    /// `None` when the field is missing or not a string.
    pub url: Option<String>,
    /// True for actions that open a page (Action.OpenUrl, OpenUri): the deep-link rule applies.
    pub opens_page: bool,
}

/// One labelled action (a button) for the label-clarity rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionLabel {
    /// JSON path of the action in the card.
    pub path: String,
    /// The action's type as written.
    pub action_type: String,
    /// The label (`title` for Adaptive actions, `name` for MessageCard actions), if it is a
    /// string.
    pub label: Option<String>,
}

/// Everything the walker found in a card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardScan {
    /// URL-bearing actions, one entry per URL.
    pub urls: Vec<ActionUrl>,
    /// Buttons whose label a person reads. `selectAction`s are not buttons and are left out.
    pub labels: Vec<ActionLabel>,
    /// True when the card nests deeper than [`MAX_CARD_DEPTH`] and was not walked completely.
    pub depth_exceeded: bool,
}

/// MessageCard action types that render as a button with a `name`.
const LEGACY_BUTTON_TYPES: &[&str] = &[
    "openuri",
    "httppost",
    "actioncard",
    "invokeaddincommand",
    "viewaction",
];

/// Walks every object anywhere in the card, so actions are found wherever they sit: top-level
/// `actions`, `ActionSet`, `selectAction` on any element, cards nested in `Action.ShowCard.card`,
/// MessageCard `potentialAction` (also inside `sections` and `ActionCard.actions`), and any
/// container a newer schema adds. Type names are matched ASCII case-insensitively so that a
/// lenient renderer cannot be handed an action this check overlooks.
pub fn scan_card(card: &Value) -> CardScan {
    let mut scan = CardScan::default();
    // Iterative depth-first walk: (value, path, depth, key under which it sits).
    let mut stack: Vec<(&Value, String, usize, Option<&str>)> =
        vec![(card, String::new(), 0, None)];
    while let Some((value, path, depth, key)) = stack.pop() {
        if depth > MAX_CARD_DEPTH {
            scan.depth_exceeded = true;
            continue;
        }
        match value {
            Value::Object(map) => {
                inspect_object(map, &path, key, &mut scan);
                // Reverse push so that the walk visits children in map order.
                for (child_key, child) in map.iter().rev() {
                    if child.is_object() || child.is_array() {
                        let child_path = if path.is_empty() {
                            child_key.clone()
                        } else {
                            format!("{path}.{child_key}")
                        };
                        stack.push((child, child_path, depth + 1, Some(child_key.as_str())));
                    }
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate().rev() {
                    if child.is_object() || child.is_array() {
                        // Array elements keep the key of their array, so that a
                        // `selectAction: [..]` element is still known as one.
                        stack.push((child, format!("{path}[{index}]"), depth + 1, key));
                    }
                }
            }
            _ => {}
        }
    }
    scan
}

fn string_field(map: &Map<String, Value>, field: &str) -> Option<String> {
    map.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn inspect_object(map: &Map<String, Value>, path: &str, key: Option<&str>, scan: &mut CardScan) {
    let display_path = if path.is_empty() { "(card)" } else { path };
    if let Some(action_type) = map.get("type").and_then(Value::as_str) {
        let lower = action_type.to_ascii_lowercase();
        if lower == "action.http" || lower == "action.openurl" {
            scan.urls.push(ActionUrl {
                path: display_path.to_owned(),
                action_type: action_type.to_owned(),
                field: "url".to_owned(),
                url: string_field(map, "url"),
                opens_page: lower == "action.openurl",
            });
        }
        if lower.starts_with("action.") && key != Some("selectAction") {
            scan.labels.push(ActionLabel {
                path: display_path.to_owned(),
                action_type: action_type.to_owned(),
                label: string_field(map, "title"),
            });
        }
    }
    if let Some(action_type) = map.get("@type").and_then(Value::as_str) {
        let lower = action_type.to_ascii_lowercase();
        if lower == "httppost" {
            scan.urls.push(ActionUrl {
                path: display_path.to_owned(),
                action_type: action_type.to_owned(),
                field: "target".to_owned(),
                url: string_field(map, "target"),
                opens_page: false,
            });
        } else if lower == "openuri"
            && let Some(targets) = map.get("targets").and_then(Value::as_array)
        {
            for (index, target) in targets.iter().enumerate() {
                scan.urls.push(ActionUrl {
                    path: display_path.to_owned(),
                    action_type: action_type.to_owned(),
                    field: format!("targets[{index}].uri"),
                    url: target.get("uri").and_then(Value::as_str).map(str::to_owned),
                    opens_page: true,
                });
            }
        }
        if LEGACY_BUTTON_TYPES.contains(&lower.as_str()) {
            scan.labels.push(ActionLabel {
                path: display_path.to_owned(),
                action_type: action_type.to_owned(),
                label: string_field(map, "name"),
            });
        }
    }
}

/// Host of a registered target as compared with action URLs: lower-case A-label (the url crate
/// applies IDNA to http(s) hosts), one trailing dot dropped. `None` for an IP address or no
/// host: registered targets are domain names, and an action must name one.
fn comparable_host(url: &Url) -> Option<String> {
    match url.host()? {
        Host::Domain(domain) => Some(domain.trim_end_matches('.').to_ascii_lowercase()),
        Host::Ipv4(_) | Host::Ipv6(_) => None,
    }
}

/// Checks one action URL: absolute `https`, written so that every client reads the same host,
/// on the default port, and with a host equal to a registered target's host or a subdomain of
/// it at a label boundary. `Ok` names the target that covers it; `Err` says what is wrong, for
/// the evidence.
///
/// The host must be unambiguous because the mail client that renders the card, the service
/// behind it and a reviewer reading the URL must all mean the same server: a backslash
/// (`https://fabrikam.com\@evil.com`, which browsers read as host `fabrikam.com` and RFC 3986
/// readers as `evil.com`), user info (`https://fabrikam.com@evil.com`), a percent-encoded host
/// or any URL whose naive reading names another host than its WHATWG parse is refused, as is
/// an explicit port other than 443 (a registered target is an https origin on its default
/// port; another port is another service) and an IP address.
pub fn check_url_within_targets(raw: &str, targets: &[Url]) -> Result<String, String> {
    if raw.contains('\\') {
        return Err(
            "contains a backslash, which browsers read as \"/\" and other clients do not, so they could call different hosts"
                .to_owned(),
        );
    }
    let url = Url::parse(raw).map_err(|err| format!("not an absolute URL ({err})"))?;
    if url.scheme() != "https" {
        return Err(format!("uses {}://, not https://", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() || naive_authority_has_userinfo(raw) {
        return Err(
            "carries a user name or password (\"…@\") before the host; remove it".to_owned(),
        );
    }
    if let Some(port) = url.port() {
        return Err(format!(
            "names port {port}; actions must use the default https port 443"
        ));
    }
    let host = match url.host() {
        None => return Err("has no host".to_owned()),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => {
            return Err("points at an IP address; use a registered domain name".to_owned());
        }
        Some(Host::Domain(domain)) => domain.trim_end_matches('.').to_ascii_lowercase(),
    };
    if !host_reads_the_same(raw, &url) {
        return Err(format!(
            "names host {host} for browsers but {} for other clients; write the host plainly",
            naive_host(raw).unwrap_or_default()
        ));
    }
    for target in targets {
        let Some(target_host) = comparable_host(target) else {
            continue;
        };
        if is_same_or_subdomain(&host, &target_host) {
            return Ok(format!(
                "host {host} is covered by registered target {target}"
            ));
        }
    }
    Err(format!(
        "host {host} is neither a registered target host nor a subdomain of one"
    ))
}

/// True when the authority (between `//` and the first `/`, `?`, `#` or `\`) holds an `@`,
/// even an empty user name that the url crate drops (`https://@fabrikam.com`).
fn naive_authority_has_userinfo(raw: &str) -> bool {
    raw.split_once("://").is_some_and(|(_, rest)| {
        rest.split(['/', '?', '#', '\\'])
            .next()
            .is_some_and(|authority| authority.contains('@'))
    })
}

/// The deep-link rule: a URL that opens a page must not be a bare site root. Deep when the path
/// is neither empty nor `/`, or there is a non-empty query or fragment
/// (`https://x.com/#/orders/1` is deep; `https://x.com/` and `https://x.com/?` are not).
/// `None` when the URL cannot be parsed (the target check reports it).
pub fn is_deep_link(raw: &str) -> Option<bool> {
    let url = Url::parse(raw).ok()?;
    let path = url.path();
    Some(
        !(path.is_empty() || path == "/")
            || url.query().is_some_and(|q| !q.is_empty())
            || url.fragment().is_some_and(|f| !f.is_empty()),
    )
}

/// Labels that say nothing about what a button does (compared lower-case, trimmed, inner
/// whitespace collapsed, trailing punctuation dropped).
const GENERIC_LABELS: &[&str] = &[
    "click here",
    "click",
    "click this",
    "tap here",
    "here",
    "ok",
    "okay",
    "submit",
    "send",
    "link",
    "button",
    "go",
    "yes",
    "no",
    "more",
    "read more",
    "learn more",
    "this",
];

/// The label rule: `Some(reason)` when a button label is missing, empty or generic.
pub fn label_problem(label: Option<&str>) -> Option<String> {
    let Some(label) = label else {
        return Some("has no title".to_owned());
    };
    let normalized = label
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(['.', '!', '?', ':', '…'])
        .trim()
        .to_lowercase();
    if normalized.is_empty() {
        return Some("has an empty title".to_owned());
    }
    if GENERIC_LABELS.contains(&normalized.as_str()) {
        return Some(format!(
            "title \"{}\" is generic: say what the button does (e.g. \"Approve expense\")",
            label.trim()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Sorted, so that the tests do not depend on serde_json's map order (`preserve_order`).
    fn urls(card: &Value) -> Vec<(String, String, Option<String>, bool)> {
        let mut found: Vec<_> = scan_card(card)
            .urls
            .into_iter()
            .map(|u| (u.path, u.field, u.url, u.opens_page))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn finds_actions_everywhere_in_an_adaptive_card() {
        let card = json!({
            "type": "AdaptiveCard",
            "body": [
                {"type": "Image", "url": "http://cdn.example.com/a.png",
                 "selectAction": {"type": "Action.OpenUrl", "url": "https://a.example.com/img"}},
                {"type": "ActionSet", "actions": [
                    {"type": "Action.Http", "method": "POST", "title": "Approve",
                     "url": "https://api.example.com/approve?c={{comment.value}}"}
                ]},
                {"type": "TextBlock", "text": "[docs](http://docs.example.com)"}
            ],
            "actions": [
                {"type": "Action.ShowCard", "title": "Comment", "card": {
                    "type": "AdaptiveCard",
                    "actions": [{"type": "Action.Http", "title": "Send comment",
                                 "url": "https://api.example.com/comment"}]
                }},
                {"type": "Action.OpenUrl", "title": "Open", "url": "https://a.example.com/#/orders/1"}
            ]
        });
        let found = urls(&card);
        assert_eq!(
            found,
            vec![
                (
                    "actions[0].card.actions[0]".to_owned(),
                    "url".to_owned(),
                    Some("https://api.example.com/comment".to_owned()),
                    false
                ),
                (
                    "actions[1]".to_owned(),
                    "url".to_owned(),
                    Some("https://a.example.com/#/orders/1".to_owned()),
                    true
                ),
                (
                    "body[0].selectAction".to_owned(),
                    "url".to_owned(),
                    Some("https://a.example.com/img".to_owned()),
                    true
                ),
                (
                    "body[1].actions[0]".to_owned(),
                    "url".to_owned(),
                    Some("https://api.example.com/approve?c={{comment.value}}".to_owned()),
                    false
                ),
            ]
        );
        let mut labels: Vec<String> = scan_card(&card)
            .labels
            .into_iter()
            .map(|l| l.path)
            .collect();
        labels.sort();
        // The selectAction is not a button.
        assert_eq!(
            labels,
            vec![
                "actions[0]",
                "actions[0].card.actions[0]",
                "actions[1]",
                "body[1].actions[0]"
            ]
        );
    }

    #[test]
    fn finds_legacy_message_card_actions() {
        let card = json!({
            "@type": "MessageCard",
            "sections": [{"potentialAction": [
                {"@type": "OpenUri", "name": "View", "targets": [
                    {"os": "default", "uri": "https://boards.example.com/c/1"},
                    {"os": "iOS", "uri": "https://boards.example.com/"}
                ]}
            ]}],
            "potentialAction": [
                {"@type": "ActionCard", "name": "Comment", "actions": [
                    {"@type": "HttpPOST", "name": "Save", "target": "http://boards.example.com/save"}
                ]}
            ]
        });
        let found = urls(&card);
        assert_eq!(
            found,
            vec![
                (
                    "potentialAction[0].actions[0]".to_owned(),
                    "target".to_owned(),
                    Some("http://boards.example.com/save".to_owned()),
                    false
                ),
                (
                    "sections[0].potentialAction[0]".to_owned(),
                    "targets[0].uri".to_owned(),
                    Some("https://boards.example.com/c/1".to_owned()),
                    true
                ),
                (
                    "sections[0].potentialAction[0]".to_owned(),
                    "targets[1].uri".to_owned(),
                    Some("https://boards.example.com/".to_owned()),
                    true
                ),
            ]
        );
        assert_eq!(scan_card(&card).labels.len(), 3);
    }

    #[test]
    fn missing_url_is_reported_as_none() {
        let card =
            json!({"type": "AdaptiveCard", "actions": [{"type": "Action.Http", "title": "Go on"}]});
        assert_eq!(
            urls(&card),
            vec![("actions[0]".to_owned(), "url".to_owned(), None, false)]
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut card = json!({"type": "Action.OpenUrl", "url": "https://deep.example.com/x"});
        for _ in 0..(MAX_CARD_DEPTH + 5) {
            card = json!([card]);
        }
        let scan = scan_card(&card);
        assert!(scan.depth_exceeded);
        assert!(scan.urls.is_empty());
    }

    fn targets(list: &[&str]) -> Vec<Url> {
        list.iter()
            .map(|t| Url::parse(t).expect("test target"))
            .collect()
    }

    #[test]
    fn target_rule() {
        let registered = targets(&["https://fabrikam.com", "https://photos.x.com"]);
        assert!(check_url_within_targets("https://api.fabrikam.com/a", &registered).is_ok());
        assert!(check_url_within_targets("https://FABRIKAM.com./a", &registered).is_ok());
        assert!(check_url_within_targets("https://fabrikam.com:443/a", &registered).is_ok());
        assert!(
            check_url_within_targets("https://api.fabrikam.com/a?v={{input.value}}", &registered)
                .is_ok()
        );
        assert!(check_url_within_targets("https://cdn.x.com/a", &registered).is_err());
        assert!(check_url_within_targets("https://evilfabrikam.com/a", &registered).is_err());
        assert!(check_url_within_targets("http://api.fabrikam.com/a", &registered).is_err());
        assert!(check_url_within_targets("/relative/path", &registered).is_err());
        assert!(check_url_within_targets("https://{{host}}/x", &registered).is_err());
        let idn = targets(&["https://shop.xn--bcher-kva.de"]);
        assert!(check_url_within_targets("https://shop.bücher.de/o/1", &idn).is_ok());
    }

    #[test]
    fn action_urls_must_name_one_host_on_the_default_port() {
        let registered = targets(&["https://fabrikam.com"]);
        let cases: &[(&str, &str)] = &[
            ("https://api.fabrikam.com:8443/a", "port 8443"),
            ("https://api.fabrikam.com:80/a", "port 80"),
            ("https://api.fabrikam.com:1/a", "port 1"),
            ("https://api.fabrikam.com\\@evil.com/a", "backslash"),
            ("https://evil.com\\@api.fabrikam.com/a", "backslash"),
            ("https:\\\\api.fabrikam.com/a", "backslash"),
            ("https://api.fabrikam.com/a\\b", "backslash"),
            ("https://user:pw@fabrikam.com/a", "user name or password"),
            ("https://fabrikam.com@evil.com/a", "user name or password"),
            ("https://@fabrikam.com/a", "user name or password"),
            ("https://:@fabrikam.com/a", "user name or password"),
            ("https://api.fabrikam.com%2eevil.com/a", "for other clients"),
            ("https://api%2Efabrikam.com/a", "for other clients"),
            ("https://%66abrikam.com/a", "for other clients"),
            ("https://10.0.0.1/x", "IP address"),
            ("https://[::1]/x", "IP address"),
            ("https://0x7f.1/x", "IP address"),
        ];
        for (url, why) in cases {
            let error = check_url_within_targets(url, &registered).expect_err(url);
            assert!(error.contains(why), "{url}: {error}");
        }
    }

    #[test]
    fn deep_link_rule() {
        assert_eq!(is_deep_link("https://x.com/#/orders/1"), Some(true));
        assert_eq!(is_deep_link("https://x.com/orders/1"), Some(true));
        assert_eq!(is_deep_link("https://x.com?order=1"), Some(true));
        assert_eq!(is_deep_link("https://x.com/"), Some(false));
        assert_eq!(is_deep_link("https://x.com"), Some(false));
        assert_eq!(is_deep_link("https://x.com/?"), Some(false));
        assert_eq!(is_deep_link("not a url"), None);
    }

    #[test]
    fn label_rule() {
        assert_eq!(label_problem(Some("Approve expense")), None);
        assert_eq!(label_problem(Some("View in Trello")), None);
        assert!(label_problem(Some("  Click   HERE! ")).is_some());
        assert!(label_problem(Some("OK")).is_some());
        assert!(label_problem(Some("submit")).is_some());
        assert!(label_problem(Some("   ")).is_some());
        assert!(label_problem(None).is_some());
    }
}
