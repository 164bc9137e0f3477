//! Tests of `check_sample` as a whole: the sample table of `tests/fixtures/samples`
//! (`cases.json` against every `.eml`, with `dns.json` as the only DNS) and hostile or broken
//! inputs built here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::checks::{MAX_EVIDENCE_LINES, MAX_LISTED_ACTIONS};
use super::domains::normalize_address;
use super::*;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/samples"
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    file: String,
    registration: CaseRegistration,
    expected: serde_json::Map<String, Value>,
    dkim_signatures: Vec<CaseSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaseRegistration {
    senders: Vec<String>,
    target_urls: Vec<String>,
}

#[derive(Deserialize)]
struct CaseSignature {
    d: String,
    s: String,
    verified: bool,
}

fn registration_of(case: &Case) -> RegistrationFacts {
    RegistrationFacts {
        senders: case
            .registration
            .senders
            .iter()
            .map(|s| normalize_address(s).expect("registered sender in cases.json is valid"))
            .collect(),
        target_urls: case
            .registration
            .target_urls
            .iter()
            .map(|u| url::Url::parse(u).expect("target URL in cases.json is valid"))
            .collect(),
        declared_mail_type: None,
    }
}

fn fixture_dns() -> FixtureTxt {
    let json = std::fs::read_to_string(fixtures_dir().join("dns.json")).expect("read dns.json");
    FixtureTxt::from_json(&json).expect("dns.json has the documented shape")
}

#[tokio::test]
async fn every_sample_matches_cases_json() {
    let dir = fixtures_dir();
    let cases: Vec<Case> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("cases.json")).expect("read cases.json"),
    )
    .expect("cases.json has the documented shape");
    let eml_files = std::fs::read_dir(&dir)
        .expect("list fixtures")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
        .count();
    assert!(!cases.is_empty(), "cases.json lists no case");
    assert_eq!(cases.len(), eml_files, "every .eml has exactly one case");

    let dns = fixture_dns();
    let mut mismatches = Vec::new();
    for case in &cases {
        let raw = std::fs::read(dir.join(&case.file)).expect("read sample");
        let report = match check_sample(&raw, &registration_of(case), &dns).await {
            Ok(report) => report,
            Err(err) => {
                mismatches.push(format!(
                    "{}: rejected with {}: {err}",
                    case.file,
                    err.code()
                ));
                continue;
            }
        };
        let facts = serde_json::to_value(&report.facts).expect("facts serialise");
        for (field, expected) in &case.expected {
            let actual = facts.get(field);
            if actual != Some(expected) {
                mismatches.push(format!(
                    "{}: field {field}: expected {expected}, got {}",
                    case.file,
                    actual.map_or_else(|| "(missing)".to_owned(), Value::to_string)
                ));
            }
        }
        let signatures = &report.facts.dkim_signatures;
        if signatures.len() != case.dkim_signatures.len() {
            mismatches.push(format!(
                "{}: dkimSignatures: expected {} signature(s), got {}",
                case.file,
                case.dkim_signatures.len(),
                signatures.len()
            ));
        }
        for (index, (actual, expected)) in signatures.iter().zip(&case.dkim_signatures).enumerate()
        {
            if actual.d.as_deref() != Some(expected.d.as_str())
                || actual.s.as_deref() != Some(expected.s.as_str())
                || actual.verified != expected.verified
            {
                mismatches.push(format!(
                    "{}: dkimSignatures[{index}]: expected d={} s={} verified={}, got {:?}",
                    case.file, expected.d, expected.s, expected.verified, actual
                ));
            }
        }
        // The report is stored as JSON: it must come back unchanged.
        let json = serde_json::to_string(&report).expect("report serialises");
        let back: CriteriaReport = serde_json::from_str(&json).expect("report deserialises");
        if back != report {
            mismatches.push(format!("{}: report JSON does not round-trip", case.file));
        }
        // The report's overall may only be stricter than the facts' for WARN.
        if report.facts.overall == Verdict::Fail && report.overall != Verdict::Fail {
            mismatches.push(format!("{}: report overall weaker than facts", case.file));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatch(es):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn evidence_points_at_what_to_fix() {
    let dir = fixtures_dir();
    let dns = fixture_dns();
    let registration = RegistrationFacts {
        senders: vec!["devops@fabrikam.com".to_owned()],
        target_urls: vec![url::Url::parse("https://devops.fabrikam.com").expect("url")],
        declared_mail_type: None,
    };
    let raw = std::fs::read(dir.join("09-action-http-not-https.eml")).expect("read sample");
    let report = check_sample(&raw, &registration, &dns)
        .await
        .expect("checked");
    let targets = report
        .checks
        .iter()
        .find(|c| c.criterion == Criterion::ActionsWithinTargets)
        .expect("check present");
    assert_eq!(targets.verdict, Verdict::Fail);
    assert!(
        targets
            .evidence
            .iter()
            .any(|line| line.contains("Action.Http url http://devops.fabrikam.com")),
        "{:?}",
        targets.evidence
    );

    let registration = RegistrationFacts {
        senders: vec!["tasks@fabrikam.com".to_owned()],
        target_urls: vec![url::Url::parse("https://tasks.fabrikam.com").expect("url")],
        declared_mail_type: Some(DeclaredMailType::Promotional),
    };
    let raw = std::fs::read(dir.join("03-esp-dkim-not-aligned.eml")).expect("read sample");
    let report = check_sample(&raw, &registration, &dns)
        .await
        .expect("checked");
    let aligned = report
        .checks
        .iter()
        .find(|c| c.criterion == Criterion::DomainAligned)
        .expect("check present");
    assert!(
        aligned.evidence.iter().any(|line| line.contains(
            "From domain fabrikam.com (registrable fabrikam.com) vs DKIM d=esp-relay.example (registrable esp-relay.example): not aligned"
        )),
        "{:?}",
        aligned.evidence
    );
    let transactional = report
        .checks
        .iter()
        .find(|c| c.criterion == Criterion::Transactional)
        .expect("check present");
    assert_eq!(transactional.verdict, Verdict::Fail);
    assert_eq!(report.overall, Verdict::Fail);
    assert_eq!(report.checks.len(), 11);
    let manual = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Manual)
        .count();
    assert_eq!(manual, 2);
    let json = serde_json::to_value(&report).expect("serialises");
    assert_eq!(json["checks"][0]["criterion"], "AUTHENTICATED");
    assert_eq!(json["checks"][9]["verdict"], "MANUAL");
}

// ---------------------------------------------------------------------------------------------
// Broken and hostile inputs: each gives a report or a SampleError, never a panic.

fn registration() -> RegistrationFacts {
    RegistrationFacts {
        senders: vec!["expense@contoso.com".to_owned()],
        target_urls: vec![url::Url::parse("https://api.contoso.com").expect("url")],
        declared_mail_type: None,
    }
}

const HEADERS: &str = "From: Contoso Expenses <expense@contoso.com>\r\nTo: amverify@microsoft.com\r\nSubject: Expense report\r\nMIME-Version: 1.0\r\n";

fn card_html(card: &str) -> String {
    format!(
        "<html><head><script type=\"application/adaptivecard+json\">{card}</script></head><body>x</body></html>"
    )
}

async fn run(raw: &[u8]) -> Result<CriteriaReport, SampleError> {
    check_sample(raw, &registration(), &FixtureTxt::default()).await
}

#[tokio::test]
async fn empty_input_is_not_a_message() {
    let err = run(b"").await.expect_err("rejected");
    assert_eq!(err.code(), "SAMPLE_NOT_A_MESSAGE");
}

#[tokio::test]
async fn body_only_input_is_not_a_message() {
    let raw = b"Hello,\r\n\r\nplease approve the expense report below.\r\n\r\n<html><body>Approve</body></html>\r\n";
    let err = run(raw).await.expect_err("rejected");
    assert_eq!(err.code(), "SAMPLE_NOT_A_MESSAGE");
    let raw =
        "<html><head><script type=\"application/adaptivecard+json\">{}</script></head></html>";
    let err = run(raw.as_bytes()).await.expect_err("rejected");
    assert_eq!(err.code(), "SAMPLE_NOT_A_MESSAGE");
}

#[tokio::test]
async fn message_without_from_is_not_a_message() {
    let raw = "To: amverify@microsoft.com\r\nSubject: hi\r\n\r\nbody\r\n";
    let err = run(raw.as_bytes()).await.expect_err("rejected");
    assert_eq!(err.code(), "SAMPLE_NOT_A_MESSAGE");
    assert!(err.to_string().contains("From"), "{err}");
}

#[tokio::test]
async fn twenty_megabytes_are_rejected_before_parsing() {
    let mut raw = HEADERS.as_bytes().to_vec();
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
    raw.resize(20 * 1024 * 1024, b'a');
    let started = Instant::now();
    let err = run(&raw).await.expect_err("rejected");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), "SAMPLE_TOO_LARGE");
    assert_eq!(
        err,
        SampleError::TooLarge {
            limit_bytes: MAX_SAMPLE_BYTES
        }
    );
    // One byte over the limit is already too large; the limit itself is not.
    let mut at_limit = HEADERS.as_bytes().to_vec();
    at_limit.extend_from_slice(b"\r\n");
    at_limit.resize(MAX_SAMPLE_BYTES, b'a');
    assert!(run(&at_limit).await.is_ok());
    at_limit.push(b'a');
    assert_eq!(
        run(&at_limit).await.expect_err("rejected").code(),
        "SAMPLE_TOO_LARGE"
    );
}

#[tokio::test]
async fn deeply_nested_multiparts_are_rejected() {
    let levels = 1000;
    let mut raw = HEADERS.to_owned();
    for level in 0..levels {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for level in (0..levels).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    let err = run(raw.as_bytes()).await.expect_err("rejected");
    assert_eq!(err.code(), "SAMPLE_TOO_DEEPLY_NESTED");

    // Exactly at the limit is accepted.
    let mut raw = HEADERS.to_owned();
    for level in 0..MAX_MIME_DEPTH {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for level in (0..MAX_MIME_DEPTH).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    assert!(run(raw.as_bytes()).await.is_ok());
}

#[tokio::test]
async fn truncated_multipart_still_gives_a_report() {
    let card = r#"{"type":"AdaptiveCard","actions":[{"type":"Action.Http","title":"Approve","url":"https://api.contoso.com/approve/1"}]}"#;
    let raw = format!(
        "{HEADERS}Content-Type: multipart/alternative; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nApprove\r\n--zz\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}\r\n",
        card_html(card)
    );
    // mail-parser cannot decode an HTML part cut off before its closing boundary and keeps it
    // as plain text: no markup, and the evidence says which part and why.
    let report = run(raw.as_bytes()).await.expect("report");
    assert_eq!(report.facts.markup, MarkupKind::None);
    let markup = report
        .checks
        .iter()
        .find(|c| c.criterion == Criterion::MarkupValid)
        .expect("check present");
    assert!(
        markup.evidence[0].contains("could not be decoded"),
        "{:?}",
        markup.evidence
    );
    // With the closing boundary the same message has valid markup.
    let closed = format!("{raw}--zz--\r\n");
    let report = run(closed.as_bytes()).await.expect("report");
    assert_eq!(report.facts.markup, MarkupKind::Adaptive);
    assert!(report.facts.actions_within_targets);
    // An HTML part whose card is cut off in the middle (then properly closed): invalid markup.
    let cut = raw.find("Action.Http").expect("present");
    let cut_card = format!("{}\r\n--zz--\r\n", &raw[..cut]);
    let report = run(cut_card.as_bytes()).await.expect("report");
    assert_eq!(report.facts.markup, MarkupKind::Invalid);
    assert_eq!(report.facts.overall, Verdict::Fail);
}

#[tokio::test]
async fn broken_base64_html_part_gives_a_report() {
    let raw = format!(
        "{HEADERS}Content-Type: multipart/alternative; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhi\r\n--zz\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGh0bWw+!!!not*base64%%%\r\n====\r\n--zz--\r\n"
    );
    let report = run(raw.as_bytes()).await.expect("report");
    assert_ne!(report.facts.markup, MarkupKind::Adaptive);
    assert_eq!(report.facts.overall, Verdict::Fail);
}

#[tokio::test]
async fn raw_eight_bit_headers_give_a_report() {
    let mut raw = b"From: J\xf6rg \xff <expense@contoso.com>\r\nSubject: Gr\xfc\xdfe \xc3\x28\r\nPrecedence: \xfe\r\nAuthentication-Results: spf=pass\xff smtp.mailfrom=contoso.com\r\nContent-Type: text/html\r\n\r\n".to_vec();
    raw.extend_from_slice(
        card_html(r#"{"type":"AdaptiveCard","actions":[{"type":"Action.OpenUrl","title":"Open report","url":"https://api.contoso.com/r/1"}]}"#)
            .as_bytes(),
    );
    let report = run(&raw).await.expect("report");
    assert_eq!(
        report.facts.from_address.as_deref(),
        Some("expense@contoso.com")
    );
    assert!(report.facts.sender_registered);
    assert_eq!(report.facts.markup, MarkupKind::Adaptive);
    assert!(serde_json::to_string(&report).is_ok());
}

#[tokio::test]
async fn card_nesting_ten_thousand_arrays_is_invalid_markup() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let card = format!(r#"{{"type":"AdaptiveCard","body":{deep}}}"#);
    let raw = format!(
        "{HEADERS}Content-Type: text/html; charset=utf-8\r\n\r\n{}",
        card_html(&card)
    );
    let report = run(raw.as_bytes()).await.expect("report");
    assert_eq!(report.facts.markup, MarkupKind::Invalid);
    assert!(report.facts.actions_within_targets, "vacuously true");
}

#[tokio::test]
async fn card_deeper_than_the_walker_limit_fails_the_target_check() {
    // Deeper than MAX_CARD_DEPTH but within serde_json's 128 levels.
    let depth = MAX_CARD_DEPTH + 10;
    let action = r#"{"type":"Action.Http","title":"Approve","url":"http://evil.example/x"}"#;
    let deep = format!("{}{action}{}", "[".repeat(depth), "]".repeat(depth));
    let card = format!(r#"{{"type":"AdaptiveCard","body":{deep}}}"#);
    let raw = format!(
        "{HEADERS}Content-Type: text/html; charset=utf-8\r\n\r\n{}",
        card_html(&card)
    );
    let report = run(raw.as_bytes()).await.expect("report");
    assert_eq!(report.facts.markup, MarkupKind::Adaptive);
    assert!(!report.facts.actions_within_targets);
}

/// Thousands of actions are all checked, but the report stays small: the facts list at most
/// `MAX_LISTED_ACTIONS` of them and each check at most `MAX_EVIDENCE_LINES` lines. The one
/// action outside the targets comes last, so it is checked although it is not listed.
#[tokio::test]
async fn thousands_of_actions_are_all_checked_and_listed_in_bounds() {
    let good =
        r#"{"type":"Action.Http","title":"Approve expense","url":"https://api.contoso.com/ok"}"#;
    let bad = r#"{"type":"Action.Http","title":"Approve expense","url":"https://evil.example/x"}"#;
    let mut actions = vec![good; 3_000];
    actions.push(bad);
    let card = format!(
        r#"{{"type":"AdaptiveCard","actions":[{}]}}"#,
        actions.join(",")
    );
    let raw = format!(
        "{HEADERS}Content-Type: text/html; charset=utf-8\r\n\r\n{}",
        card_html(&card)
    );
    let report = run(raw.as_bytes()).await.expect("report");
    assert!(
        !report.facts.actions_within_targets,
        "the last action was checked"
    );
    assert_eq!(report.facts.card_actions.len(), MAX_LISTED_ACTIONS);
    for check in &report.checks {
        assert!(
            check.evidence.len() <= MAX_EVIDENCE_LINES,
            "{:?}: {} lines",
            check.criterion,
            check.evidence.len()
        );
    }
    let stored = serde_json::to_vec(&report).expect("serialises");
    assert!(stored.len() < 64 * 1024, "{} bytes", stored.len());
}

#[tokio::test]
async fn generic_labels_warn_without_changing_the_facts_overall() {
    let card = r#"{"type":"AdaptiveCard","actions":[{"type":"Action.Http","title":"OK","url":"https://api.contoso.com/ok/1"}]}"#;
    let raw = format!(
        "{HEADERS}Content-Type: text/html; charset=utf-8\r\n\r\n{}",
        card_html(card)
    );
    let report = run(raw.as_bytes()).await.expect("report");
    let labels = report
        .checks
        .iter()
        .find(|c| c.criterion == Criterion::ClearLabels)
        .expect("check present");
    assert_eq!(labels.verdict, Verdict::Warn);
    assert!(labels.evidence[0].contains("actions[0] Action.Http"));
}

#[test]
fn error_codes_and_messages() {
    let errors = [
        SampleError::TooLarge {
            limit_bytes: MAX_SAMPLE_BYTES,
        },
        SampleError::NotAMessage {
            detail: "it has no From: header".to_owned(),
        },
        SampleError::TooDeeplyNested {
            limit: MAX_MIME_DEPTH,
        },
    ];
    let codes: Vec<&str> = errors.iter().map(SampleError::code).collect();
    assert_eq!(
        codes,
        [
            "SAMPLE_TOO_LARGE",
            "SAMPLE_NOT_A_MESSAGE",
            "SAMPLE_TOO_DEEPLY_NESTED"
        ]
    );
    assert!(errors[0].to_string().contains("2097152"));
}

#[test]
fn check_sample_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let registration = registration();
    let dns = FixtureTxt::default();
    let future = check_sample(b"", &registration, &dns);
    assert_send(&future);
}

#[tokio::test]
async fn truncated_and_corrupted_samples_never_panic() {
    let dir = fixtures_dir();
    let dns = fixture_dns();
    let mut runs = 0;
    for entry in std::fs::read_dir(&dir).expect("list fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|ext| ext != "eml") {
            continue;
        }
        let raw = std::fs::read(&path).expect("read sample");
        // Cut at many points (inside headers, boundaries, base64, the card) and corrupt bytes
        // at a spread of positions; every outcome is a report or a SampleError.
        let step = (raw.len() / 40).max(1);
        for cut in (0..raw.len()).step_by(step) {
            let _ = check_sample(&raw[..cut], &registration(), &dns).await;
            let mut corrupted = raw.clone();
            for (i, byte) in corrupted.iter_mut().enumerate().skip(cut).step_by(step) {
                *byte = [b'-', b'\r', b'\n', 0xff, b'=', b'<', b'"'][i % 7];
            }
            let _ = check_sample(&corrupted, &registration(), &dns).await;
            runs += 2;
        }
    }
    assert!(runs > 0);
}

#[tokio::test]
async fn group_syntax_or_several_from_addresses_never_pass_the_sender_check() {
    let cases: &[(&str, &str)] = &[
        ("From: undisclosed:;\r\n", "group syntax"),
        ("From: undisclosed-recipients: ;\r\n", "group syntax"),
        ("From: group: expense@contoso.com;\r\n", "group syntax"),
        ("From: a:expense@contoso.com\r\n", "group syntax"),
        ("From: g:;, expense@contoso.com\r\n", "group syntax"),
        ("From: expense@contoso.com, g:;\r\n", "group syntax"),
        (
            "From: group: expense@contoso.com, other@contoso.com;\r\n",
            "group syntax",
        ),
        (
            "From: expense@contoso.com, other@contoso.com\r\n",
            "holds 2 mailboxes",
        ),
        (
            "From: expense@contoso.com, expense@contoso.com\r\n",
            "holds 2 mailboxes",
        ),
        (
            "From: expense@contoso.com\r\nFrom: expense@contoso.com\r\n",
            "2 From: fields",
        ),
        (
            "From: undisclosed:;\r\nFrom: expense@contoso.com\r\n",
            "2 From: fields",
        ),
    ];
    for (from, why) in cases {
        let raw = format!("{from}Subject: Expense report\r\n\r\nbody\r\n");
        let report = run(raw.as_bytes()).await.expect(from);
        assert!(!report.facts.sender_registered, "{from:?}");
        assert_eq!(report.facts.from_address, None, "{from:?}");
        assert!(!report.facts.aligned, "{from:?}");
        let sender = report
            .checks
            .iter()
            .find(|c| c.criterion == Criterion::SenderRegistered)
            .expect("sender check");
        assert_eq!(sender.verdict, Verdict::Fail, "{from:?}");
        let evidence = sender.evidence.join(" ");
        assert!(evidence.contains(why), "{from:?}: {evidence}");
        let aligned = report
            .checks
            .iter()
            .find(|c| c.criterion == Criterion::DomainAligned)
            .expect("alignment check");
        assert!(aligned.evidence.join(" ").contains(why), "{from:?}");
    }
    // The plain forms still pass.
    for from in [
        "From: expense@contoso.com\r\n",
        "From: Contoso Expenses <expense@contoso.com>\r\n",
        "From: \"Expenses: Contoso\" <expense@contoso.com>\r\n",
    ] {
        let raw = format!("{from}Subject: Expense report\r\n\r\nbody\r\n");
        let report = run(raw.as_bytes()).await.expect(from);
        assert!(report.facts.sender_registered, "{from:?}");
    }
}
