//! Turning what was read from the sample into the facts (by the README rules), one verdict per
//! criterion with its evidence, and the overall verdicts.

use super::card::{
    CardScan, MAX_CARD_DEPTH, check_url_within_targets, is_deep_link, label_problem, scan_card,
};
use super::domains::{address_domain, normalize_address, registrable_domain, to_a_label};
use super::headers::quote_for_evidence;
use super::sample::Inspected;
use super::{
    CardActionFact, CriteriaReport, Criterion, CriterionCheck, DeclaredMailType, DkimSignatureFact,
    DkimStatus, MarkupKind, RegistrationFacts, SampleFacts, SpfStatus, Verdict,
};

fn check(criterion: Criterion, verdict: Verdict, evidence: Vec<String>) -> CriterionCheck {
    CriterionCheck {
        criterion,
        verdict,
        evidence,
    }
}

fn pass_or(ok: bool, otherwise: Verdict) -> Verdict {
    if ok { Verdict::Pass } else { otherwise }
}

fn describe_registrable(domain: &str) -> String {
    match registrable_domain(domain) {
        Some(registrable) => format!("{domain} (registrable {registrable})"),
        None => format!("{domain} (no registrable domain: a public suffix or an IP address)"),
    }
}

fn signature_label(signature: &DkimSignatureFact) -> String {
    match (&signature.d, &signature.s) {
        (Some(d), Some(s)) => format!("DKIM-Signature d={d} s={s}"),
        _ => "DKIM-Signature (unparseable)".to_owned(),
    }
}

/// The facts' `overall` by the README rule: FAIL on any required fact, else WARN when deep
/// links fail, else PASS.
fn facts_overall(facts: &SampleFacts) -> Verdict {
    let authenticated = facts.dkim == DkimStatus::Pass || facts.spf_from_header == SpfStatus::Pass;
    let markup_ok = matches!(facts.markup, MarkupKind::Adaptive | MarkupKind::MessageCard);
    if !authenticated
        || !facts.aligned
        || !markup_ok
        || facts.forwarded
        || !facts.actions_within_targets
        || facts.promotional
        || !facts.sender_registered
    {
        Verdict::Fail
    } else if !facts.deep_links {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

/// Builds the report from the sample's findings, the DKIM results and the registration.
pub fn build_report(
    inspected: Inspected,
    dkim_signatures: Vec<DkimSignatureFact>,
    registration: &RegistrationFacts,
) -> CriteriaReport {
    let dkim = if dkim_signatures.is_empty() {
        DkimStatus::None
    } else if dkim_signatures.iter().any(|s| s.verified) {
        DkimStatus::Pass
    } else {
        DkimStatus::Fail
    };
    let spf = &inspected.spf;

    // From: exactly one mailbox is needed both for alignment and for the registered sender.
    // One From field naming one plain mailbox: a second From field, group syntax (even a group
    // of one, `list: expense@contoso.com;`) or several mailboxes leave no single author.
    let from_problem = if inspected.from_fields > 1 {
        Some(format!(
            "the message has {} From: fields, and RFC 5322 allows exactly one",
            inspected.from_fields
        ))
    } else if inspected.from_group {
        Some(
            "From: uses group syntax (\"name: …;\"), which lists recipients instead of naming the \
             author's mailbox; it must hold exactly one plain mailbox"
                .to_owned(),
        )
    } else if inspected.from_mailboxes.len() != 1 {
        Some(format!(
            "From holds {} mailboxes; it must hold exactly one",
            inspected.from_mailboxes.len()
        ))
    } else {
        None
    };
    let single_mailbox = match (inspected.from_mailboxes.as_slice(), &from_problem) {
        ([only], None) => Some(only.as_str()),
        _ => None,
    };
    let from_address = single_mailbox.and_then(normalize_address);
    let from_domain = from_address
        .as_deref()
        .and_then(address_domain)
        .map(str::to_owned);
    let from_registrable = from_domain.as_deref().and_then(registrable_domain);

    // Alignment.
    let mut alignment_evidence = Vec::new();
    let mut aligned = false;
    match (&from_domain, &from_registrable) {
        (None, _) => alignment_evidence.push(match &from_problem {
            Some(problem) => format!(
                "From: \"{}\": {problem}, so there is no single domain to align with",
                quote_for_evidence(&inspected.from_header)
            ),
            None => format!(
                "From: \"{}\" has no valid domain",
                quote_for_evidence(&inspected.from_header)
            ),
        }),
        (Some(from), None) => alignment_evidence.push(format!(
            "From domain {from} has no registrable domain: it is a public suffix or an IP address"
        )),
        (Some(_), Some(_)) => {}
    }
    let from_label = from_domain
        .as_deref()
        .map_or_else(|| "(none)".to_owned(), describe_registrable);
    for signature in &dkim_signatures {
        let Some(d) = &signature.d else { continue };
        let d_label = to_a_label(d).unwrap_or_else(|| d.clone());
        if !signature.verified {
            alignment_evidence.push(format!(
                "DKIM d={d} did not verify, so it cannot align ({})",
                signature.result
            ));
            continue;
        }
        let matches =
            from_registrable.is_some() && registrable_domain(&d_label) == from_registrable;
        aligned |= matches;
        alignment_evidence.push(format!(
            "From domain {from_label} vs DKIM d={}: {}",
            describe_registrable(&d_label),
            if matches { "aligned" } else { "not aligned" }
        ));
    }
    match (&spf.domain, spf.status) {
        (Some(domain), SpfStatus::Pass) => {
            let matches =
                from_registrable.is_some() && registrable_domain(domain) == from_registrable;
            aligned |= matches;
            alignment_evidence.push(format!(
                "From domain {from_label} vs SPF smtp.mailfrom={}: {}",
                describe_registrable(domain),
                if matches { "aligned" } else { "not aligned" }
            ));
        }
        (Some(domain), _) => alignment_evidence.push(format!(
            "SPF for smtp.mailfrom={domain} did not pass, so it cannot align"
        )),
        (None, SpfStatus::Pass) => alignment_evidence.push(
            "SPF passed but the Authentication-Results header names no smtp.mailfrom domain"
                .to_owned(),
        ),
        (None, _) => {}
    }
    if dkim_signatures.is_empty() && spf.status != SpfStatus::Pass {
        alignment_evidence.push("Neither a DKIM signature nor a passing SPF result".to_owned());
    }
    if !aligned {
        let target = from_registrable
            .as_deref()
            .unwrap_or("the From address's registrable domain");
        alignment_evidence.push(format!(
            "To fix: sign with DKIM d= under {target}, or send with an envelope sender (Return-Path) under {target} whose SPF record allows the sending IP"
        ));
    }

    // Sender.
    let sender_registered = from_address
        .as_deref()
        .is_some_and(|from| registration.senders.iter().any(|s| sender_equals(s, from)));
    let mut sender_evidence = vec![format!(
        "From: \"{}\"",
        quote_for_evidence(&inspected.from_header)
    )];
    match (&from_address, sender_registered) {
        (None, _) if from_problem.is_some() => sender_evidence.push(format!(
            "{}, and that mailbox must be a registered sender",
            from_problem.as_deref().unwrap_or_default()
        )),
        (None, _) => sender_evidence.push("The From address has no valid domain".to_owned()),
        (Some(address), true) => {
            sender_evidence.push(format!("{address} is a registered sender"));
        }
        (Some(address), false) => sender_evidence.push(format!(
            "{address} is not a registered sender (registered: {}); addresses must match exactly, apart from letter case",
            if registration.senders.is_empty() {
                "none".to_owned()
            } else {
                registration.senders.join(", ")
            }
        )),
    }

    // Card.
    let markup = inspected.markup.kind;
    let scan = inspected
        .markup
        .card
        .as_ref()
        .map(scan_card)
        .unwrap_or_default();
    let (card_actions, target_evidence, deep_evidence) = evaluate_actions(&scan, registration);
    let actions_within_targets =
        !scan.depth_exceeded && card_actions.iter().all(|a| a.within_targets);
    let deep_links = card_actions.iter().all(|a| a.deep_link != Some(false));

    let forwarded = !inspected.forwarding_signals.is_empty();
    let promotional = !inspected.bulk_precedence.is_empty();

    let mut facts = SampleFacts {
        dkim,
        spf_from_header: spf.status,
        aligned,
        markup,
        forwarded,
        actions_within_targets,
        deep_links,
        promotional,
        sender_registered,
        overall: Verdict::Pass,
        dkim_signatures,
        from_address,
        from_domain,
        from_registrable_domain: from_registrable,
        spf_domain: spf.domain.clone(),
        subject: inspected.subject.clone(),
        card_actions,
    };
    facts.overall = facts_overall(&facts);

    let mut checks = Vec::with_capacity(11);
    checks.push(authenticated_check(&facts, &inspected));
    checks.push(check(
        Criterion::DomainAligned,
        pass_or(aligned, Verdict::Fail),
        alignment_evidence,
    ));
    checks.push(check(
        Criterion::SenderRegistered,
        pass_or(sender_registered, Verdict::Fail),
        sender_evidence,
    ));
    let mut markup_evidence = vec![inspected.markup.detail.clone()];
    if !matches!(markup, MarkupKind::Adaptive | MarkupKind::MessageCard) {
        markup_evidence.push(
            "To fix: put the card JSON in <script type=\"application/adaptivecard+json\"> in the <head> of the HTML body, and send the sample directly from the production servers".to_owned(),
        );
    }
    checks.push(check(
        Criterion::MarkupValid,
        pass_or(
            matches!(markup, MarkupKind::Adaptive | MarkupKind::MessageCard),
            Verdict::Fail,
        ),
        markup_evidence,
    ));
    let mut forward_evidence = inspected.forwarding_signals.clone();
    if forwarded {
        forward_evidence.push(
            "To fix: send the sample from the production servers straight to the verification address; forwarding strips the card".to_owned(),
        );
    } else {
        forward_evidence.push(
            "No forward prefix in the subject, no Resent-* or X-Forwarded-* header, no forwarded-message marker in the body".to_owned(),
        );
    }
    checks.push(check(
        Criterion::NotForwarded,
        pass_or(!forwarded, Verdict::Fail),
        forward_evidence,
    ));
    checks.push(check(
        Criterion::ActionsWithinTargets,
        pass_or(actions_within_targets, Verdict::Fail),
        target_evidence,
    ));
    checks.push(check(
        Criterion::DeepLinks,
        pass_or(deep_links, Verdict::Warn),
        deep_evidence,
    ));
    checks.push(labels_check(&scan));
    checks.push(transactional_check(&facts, &inspected, registration));
    checks.push(check(
        Criterion::SendingVolumeHistory,
        Verdict::Manual,
        vec!["Not checkable from one email: a reviewer confirms that the sender has a consistent history of sending volume".to_owned()],
    ));
    checks.push(check(
        Criterion::SpamComplaintRate,
        Verdict::Manual,
        vec!["Not checkable from one email: a reviewer confirms that the sender's spam-complaint rate is low".to_owned()],
    ));

    let overall = report_overall(&checks);
    // Every action and signature was checked; the report lists a bounded number of each, so
    // that a sample of thousands of actions cannot make a report of megabytes (it is stored
    // with every submission and read with every queue page).
    facts.card_actions.truncate(MAX_LISTED_ACTIONS);
    facts.dkim_signatures.truncate(MAX_LISTED_SIGNATURES);
    CriteriaReport {
        facts,
        checks: checks.into_iter().map(cap_evidence).collect(),
        overall,
    }
}

/// Most card actions a report lists in its facts.
pub const MAX_LISTED_ACTIONS: usize = 100;
/// Most DKIM signatures a report lists in its facts.
pub const MAX_LISTED_SIGNATURES: usize = 20;
/// Most evidence lines of one check, the last of them saying how many were left out.
pub const MAX_EVIDENCE_LINES: usize = 50;

fn cap_evidence(mut check: CriterionCheck) -> CriterionCheck {
    if check.evidence.len() > MAX_EVIDENCE_LINES {
        let kept = MAX_EVIDENCE_LINES - 1;
        let left_out = check.evidence.len() - kept;
        check.evidence.truncate(kept);
        check
            .evidence
            .push(format!("… and {left_out} more lines like the ones above"));
    }
    check
}

/// Registered senders are normalised by the caller; normalising again keeps a stray upper-case
/// or Unicode domain from causing a false mismatch.
fn sender_equals(registered: &str, from: &str) -> bool {
    normalize_address(registered).as_deref() == Some(from) || registered == from
}

fn report_overall(checks: &[CriterionCheck]) -> Verdict {
    if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if checks.iter().any(|c| c.verdict == Verdict::Warn) {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

fn authenticated_check(facts: &SampleFacts, inspected: &Inspected) -> CriterionCheck {
    let mut evidence = Vec::new();
    if facts.dkim_signatures.is_empty() {
        evidence.push("No DKIM-Signature header".to_owned());
    }
    for signature in &facts.dkim_signatures {
        evidence.push(format!(
            "{}: {}",
            signature_label(signature),
            signature.result
        ));
    }
    let spf = &inspected.spf;
    match &inspected.auth_results {
        None => evidence.push(
            "No Authentication-Results header, so SPF counts as none (the receiving server adds it: upload the message as received)".to_owned(),
        ),
        Some(value) => {
            evidence.push(format!(
                "Topmost Authentication-Results: \"{}\"",
                quote_for_evidence(value)
            ));
            evidence.push(match (&spf.result, &spf.mailfrom) {
                (None, _) => "It has no spf= result: SPF counts as none".to_owned(),
                (Some(result), Some(mailfrom)) => {
                    format!("SPF result {result} for smtp.mailfrom={mailfrom}")
                }
                (Some(result), None) => format!("SPF result {result} (no smtp.mailfrom)"),
            });
        }
    }
    let ok = facts.dkim == DkimStatus::Pass || facts.spf_from_header == SpfStatus::Pass;
    if !ok {
        evidence.push(
            "To fix: sign the mail with DKIM (publish the key at selector._domainkey.<domain>), or send it from an IP address that the envelope domain's SPF record allows".to_owned(),
        );
    }
    check(
        Criterion::Authenticated,
        pass_or(ok, Verdict::Fail),
        evidence,
    )
}

fn evaluate_actions(
    scan: &CardScan,
    registration: &RegistrationFacts,
) -> (Vec<CardActionFact>, Vec<String>, Vec<String>) {
    let mut facts = Vec::with_capacity(scan.urls.len());
    let mut target_evidence = Vec::new();
    let mut deep_evidence = Vec::new();
    for action in &scan.urls {
        let place = format!("{} {} {}", action.path, action.action_type, action.field);
        let (within_targets, deep_link) = match &action.url {
            None => {
                target_evidence.push(format!("{place}: missing; the action has no URL"));
                (false, None)
            }
            Some(url) => {
                let within = match check_url_within_targets(url, &registration.target_urls) {
                    Ok(why) => {
                        target_evidence.push(format!("{place} {url}: OK, {why}"));
                        true
                    }
                    Err(why) => {
                        target_evidence.push(format!("{place} {url}: {why}"));
                        false
                    }
                };
                let deep = if action.opens_page {
                    let deep = is_deep_link(url);
                    deep_evidence.push(match deep {
                        Some(true) => format!("{place} {url}: links to a specific page"),
                        Some(false) => format!(
                            "{place} {url}: opens the site root; link to the specific item (path, query or fragment) instead"
                        ),
                        None => format!("{place} {url}: not a URL that can be opened"),
                    });
                    deep
                } else {
                    None
                };
                (within, deep)
            }
        };
        facts.push(CardActionFact {
            path: action.path.clone(),
            action_type: action.action_type.clone(),
            field: action.field.clone(),
            url: action.url.clone(),
            within_targets,
            deep_link,
        });
    }
    if scan.depth_exceeded {
        target_evidence.push(format!(
            "The card nests deeper than {MAX_CARD_DEPTH} levels; actions below that depth were not checked"
        ));
    }
    if facts.iter().any(|a| !a.within_targets) || scan.depth_exceeded {
        target_evidence.push(format!(
            "To fix: use https URLs on a registered target host or its subdomains (registered: {})",
            if registration.target_urls.is_empty() {
                "none".to_owned()
            } else {
                registration
                    .target_urls
                    .iter()
                    .map(url::Url::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    if scan.urls.is_empty() {
        target_evidence.push("The card has no URL-bearing actions to check".to_owned());
    }
    if deep_evidence.is_empty() {
        deep_evidence.push("The card has no Action.OpenUrl or OpenUri actions".to_owned());
    }
    (facts, target_evidence, deep_evidence)
}

fn labels_check(scan: &CardScan) -> CriterionCheck {
    let mut evidence: Vec<String> = scan
        .labels
        .iter()
        .filter_map(|action| {
            label_problem(action.label.as_deref())
                .map(|problem| format!("{} {}: {problem}", action.path, action.action_type))
        })
        .collect();
    let clear = evidence.is_empty();
    if clear {
        evidence.push(if scan.labels.is_empty() {
            "The card has no buttons to check".to_owned()
        } else {
            format!("All {} button labels are specific", scan.labels.len())
        });
    }
    check(
        Criterion::ClearLabels,
        pass_or(clear, Verdict::Warn),
        evidence,
    )
}

fn transactional_check(
    facts: &SampleFacts,
    inspected: &Inspected,
    registration: &RegistrationFacts,
) -> CriterionCheck {
    let mut evidence: Vec<String> = inspected
        .bulk_precedence
        .iter()
        .map(|value| {
            format!(
                "Precedence: \"{}\" marks the message as bulk mail",
                quote_for_evidence(value)
            )
        })
        .collect();
    let declared_promotional =
        registration.declared_mail_type == Some(DeclaredMailType::Promotional);
    if declared_promotional {
        evidence.push(
            "The registration declares the mail as promotional; actionable messages are for transactional mail".to_owned(),
        );
    }
    if let Some(value) = &inspected.list_unsubscribe {
        evidence.push(format!(
            "List-Unsubscribe: \"{}\" is present; on its own it is not a promotional signal (transactional senders use it for notification settings)",
            quote_for_evidence(value)
        ));
    }
    let ok = !facts.promotional && !declared_promotional;
    if ok {
        evidence.push("No Precedence: bulk, list or junk header".to_owned());
    } else {
        evidence.push(
            "To fix: register only a service that sends transactional mail, sent without Precedence: bulk".to_owned(),
        );
    }
    check(
        Criterion::Transactional,
        pass_or(ok, Verdict::Fail),
        evidence,
    )
}
