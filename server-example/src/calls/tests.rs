//! Every transition of [`CallRegistry`]: offer, ringing, answer (first wins), ice, reject,
//! hangup, busy, timeout, blocked, disconnects, and the refusals.

use super::*;

const A: u64 = 1;
const B: u64 = 2;
const C: u64 = 3;

fn sig(call: &str, from: (u64, u32), to: u64, action: CallAction) -> Signal {
    Signal {
        call_id: call.into(),
        from_user_id: from.0,
        from_device_id: from.1,
        to_user_id: to,
        action,
        sdp: matches!(action, CallAction::Offer | CallAction::Answer).then(|| "v=0".to_string()),
        candidate: (action == CallAction::Ice).then(|| serde_json::json!({"candidate": "c"})),
    }
}

fn nobody_blocked(_: u64, _: u64) -> bool {
    false
}

/// (user, target, action, reason) of each delivery.
type Summary = Vec<(u64, DeviceTarget, CallAction, Option<EndReason>)>;

fn summary(out: &Outcome) -> Summary {
    out.deliveries
        .iter()
        .map(|d| (d.user_id, d.devices, d.event.action, d.event.reason))
        .collect()
}

fn registry() -> CallRegistry {
    CallRegistry::new(CallConfig::default())
}

fn ringing_call(r: &mut CallRegistry) {
    let out = r
        .signal(sig("k", (A, 1), B, CallAction::Offer), 0, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(B, DeviceTarget::All, CallAction::Offer, None)]
    );
}

#[test]
fn offer_rings_every_device_of_the_callee_with_the_sender_added() {
    let mut r = registry();
    let out = r
        .signal(sig("k", (A, 1), B, CallAction::Offer), 0, nobody_blocked)
        .unwrap();
    assert_eq!(out.deliveries.len(), 1);
    let frame = out.deliveries[0].frame();
    assert_eq!(frame["type"], "call");
    assert_eq!(frame["data"]["call_id"], "k");
    assert_eq!(frame["data"]["from_user_id"], "1");
    assert_eq!(frame["data"]["action"], "offer");
    assert_eq!(frame["data"]["sdp"], "v=0");
    assert!(frame["data"].get("reason").is_none());
    assert!(r.in_call(A) && r.in_call(B));
    assert_eq!(r.next_deadline_ms(), Some(RING_TIMEOUT_MS_DEFAULT));
}

#[test]
fn ringing_goes_back_to_the_calling_device() {
    let mut r = registry();
    ringing_call(&mut r);
    let out = r
        .signal(sig("k", (B, 2), A, CallAction::Ringing), 1, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(A, DeviceTarget::Only(1), CallAction::Ringing, None)]
    );
}

#[test]
fn the_first_answer_wins_and_other_devices_stop_ringing() {
    let mut r = registry();
    ringing_call(&mut r);
    let out = r
        .signal(sig("k", (B, 2), A, CallAction::Answer), 1, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![
            (A, DeviceTarget::Only(1), CallAction::Answer, None),
            (
                B,
                DeviceTarget::AllExcept(2),
                CallAction::Hangup,
                Some(EndReason::AnsweredElsewhere)
            ),
        ]
    );
    assert_eq!(out.deliveries[1].event.from_user_id, "1", "the peer");
    // A second device answering late is told the call was answered elsewhere.
    let out = r
        .signal(sig("k", (B, 3), A, CallAction::Answer), 2, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(
            B,
            DeviceTarget::Only(3),
            CallAction::Hangup,
            Some(EndReason::AnsweredElsewhere)
        )]
    );
    // The late device's hangup is ignored: the call goes on.
    let out = r
        .signal(sig("k", (B, 3), A, CallAction::Hangup), 3, nobody_blocked)
        .unwrap();
    assert!(out.deliveries.is_empty());
    assert!(r.in_call(A));
    // No timeout once answered.
    assert_eq!(r.next_deadline_ms(), None);
    assert!(r.expire(1_000_000).deliveries.is_empty());
}

#[test]
fn ice_is_relayed_between_the_active_devices() {
    let mut r = registry();
    ringing_call(&mut r);
    // Before the answer the caller's candidates reach every ringing device.
    let out = r
        .signal(sig("k", (A, 1), B, CallAction::Ice), 1, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(B, DeviceTarget::All, CallAction::Ice, None)]
    );
    assert_eq!(
        out.deliveries[0].event.candidate.as_ref().unwrap()["candidate"],
        "c"
    );
    r.signal(sig("k", (B, 2), A, CallAction::Answer), 2, nobody_blocked)
        .unwrap();
    let out = r
        .signal(sig("k", (A, 1), B, CallAction::Ice), 3, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(B, DeviceTarget::Only(2), CallAction::Ice, None)]
    );
    let out = r
        .signal(sig("k", (B, 2), A, CallAction::Ice), 4, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(A, DeviceTarget::Only(1), CallAction::Ice, None)]
    );
    // Renegotiation: a new offer from the callee reaches the caller's device.
    let out = r
        .signal(sig("k", (B, 2), A, CallAction::Offer), 5, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(A, DeviceTarget::Only(1), CallAction::Offer, None)]
    );
}

#[test]
fn reject_ends_the_call_for_everyone() {
    let mut r = registry();
    ringing_call(&mut r);
    let out = r
        .signal(sig("k", (B, 2), A, CallAction::Reject), 1, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![
            (A, DeviceTarget::Only(1), CallAction::Reject, None),
            (
                B,
                DeviceTarget::AllExcept(2),
                CallAction::Hangup,
                Some(EndReason::RejectedElsewhere)
            ),
        ]
    );
    assert!(out.missed.is_empty(), "a declined call is not missed");
    assert!(r.is_empty() && !r.in_call(A) && !r.in_call(B));
}

#[test]
fn hangup_of_an_active_call_reaches_the_peer_and_frees_both() {
    let mut r = registry();
    ringing_call(&mut r);
    r.signal(sig("k", (B, 2), A, CallAction::Answer), 1, nobody_blocked)
        .unwrap();
    let out = r
        .signal(sig("k", (B, 2), A, CallAction::Hangup), 2, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(A, DeviceTarget::Only(1), CallAction::Hangup, None)]
    );
    assert!(r.is_empty());
    // Hanging up again is harmless.
    let out = r
        .signal(sig("k", (A, 1), B, CallAction::Hangup), 3, nobody_blocked)
        .unwrap();
    assert!(out.deliveries.is_empty());
}

#[test]
fn the_caller_hanging_up_while_ringing_is_a_missed_call() {
    let mut r = registry();
    ringing_call(&mut r);
    let out = r
        .signal(sig("k", (A, 1), B, CallAction::Hangup), 7, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(B, DeviceTarget::All, CallAction::Hangup, None)]
    );
    assert_eq!(out.missed.len(), 1);
    assert_eq!(out.missed[0].reason, EndReason::Cancelled);
    assert!(r.is_empty());
}

#[test]
fn busy_when_the_callee_or_the_caller_is_in_a_call() {
    let mut r = registry();
    ringing_call(&mut r);
    // C calls B, who is ringing: busy, and nothing is created.
    let out = r
        .signal(sig("x", (C, 1), B, CallAction::Offer), 1, nobody_blocked)
        .unwrap();
    assert_eq!(
        summary(&out),
        vec![(
            C,
            DeviceTarget::Only(1),
            CallAction::Hangup,
            Some(EndReason::Busy)
        )]
    );
    assert_eq!(out.deliveries[0].event.from_user_id, "2");
    assert!(!r.in_call(C));
    // A (in a call) calls C from another device: busy too.
    let out = r
        .signal(sig("y", (A, 2), C, CallAction::Offer), 2, nobody_blocked)
        .unwrap();
    assert_eq!(out.deliveries[0].event.reason, Some(EndReason::Busy));
    assert_eq!(r.len(), 1);
}

#[test]
fn ringing_times_out_into_a_missed_call() {
    let mut r = registry();
    ringing_call(&mut r);
    assert!(r.expire(RING_TIMEOUT_MS_DEFAULT - 1).deliveries.is_empty());
    let out = r.expire(RING_TIMEOUT_MS_DEFAULT);
    assert_eq!(
        summary(&out),
        vec![
            (
                A,
                DeviceTarget::Only(1),
                CallAction::Hangup,
                Some(EndReason::Timeout)
            ),
            (
                B,
                DeviceTarget::All,
                CallAction::Hangup,
                Some(EndReason::Timeout)
            ),
        ]
    );
    assert_eq!(
        out.missed,
        vec![MissedCall {
            call_id: "k".into(),
            caller: A,
            callee: B,
            started_at_ms: 0,
            ended_at_ms: RING_TIMEOUT_MS_DEFAULT,
            reason: EndReason::Timeout,
        }]
    );
    assert!(r.is_empty() && r.next_deadline_ms().is_none());
    // The ended call takes no more signals.
    assert_eq!(
        r.signal(sig("k", (B, 2), A, CallAction::Answer), 1, nobody_blocked),
        Err(CallError::UnknownCall)
    );
    // A custom timeout.
    let mut r = CallRegistry::new(CallConfig {
        ring_timeout_ms: 10,
    });
    ringing_call(&mut r);
    assert_eq!(r.expire(10).missed.len(), 1);
}

#[test]
fn blocked_users_cannot_call_either_way() {
    let mut r = registry();
    let b_blocked_a = |blocker: u64, blocked: u64| (blocker, blocked) == (B, A);
    assert_eq!(
        r.signal(sig("k", (A, 1), B, CallAction::Offer), 0, b_blocked_a),
        Err(CallError::Blocked)
    );
    assert_eq!(
        r.signal(sig("k", (B, 1), A, CallAction::Offer), 0, b_blocked_a),
        Err(CallError::Blocked)
    );
    assert!(r.is_empty());
    assert_eq!(
        ApiError::from(CallError::Blocked).code(),
        "forbidden",
        "an error frame"
    );
}

#[test]
fn refusals_change_nothing() {
    let mut r = registry();
    assert!(matches!(
        r.signal(sig("k", (A, 1), A, CallAction::Offer), 0, nobody_blocked),
        Err(CallError::Invalid(_))
    ));
    let mut no_sdp = sig("k", (A, 1), B, CallAction::Offer);
    no_sdp.sdp = None;
    assert!(matches!(
        r.signal(no_sdp, 0, nobody_blocked),
        Err(CallError::Invalid(_))
    ));
    assert!(matches!(
        r.signal(sig("", (A, 1), B, CallAction::Offer), 0, nobody_blocked),
        Err(CallError::Invalid(_))
    ));
    assert_eq!(
        r.signal(sig("k", (A, 1), B, CallAction::Ice), 0, nobody_blocked),
        Err(CallError::UnknownCall)
    );
    ringing_call(&mut r);
    // A stranger, the wrong peer, the caller's other device, the caller answering.
    assert_eq!(
        r.signal(sig("k", (C, 1), B, CallAction::Ice), 1, nobody_blocked),
        Err(CallError::UnknownCall)
    );
    assert!(matches!(
        r.signal(sig("k", (A, 1), C, CallAction::Ice), 1, nobody_blocked),
        Err(CallError::Invalid(_))
    ));
    assert_eq!(
        r.signal(sig("k", (A, 2), B, CallAction::Ice), 1, nobody_blocked),
        Err(CallError::UnknownCall)
    );
    assert_eq!(
        r.signal(sig("k", (A, 1), B, CallAction::Answer), 1, nobody_blocked),
        Err(CallError::WrongState {
            action: CallAction::Answer
        })
    );
    assert_eq!(
        r.signal(sig("k", (A, 1), B, CallAction::Offer), 1, nobody_blocked),
        Err(CallError::WrongState {
            action: CallAction::Offer
        })
    );
    let mut no_sdp = sig("k", (B, 1), A, CallAction::Answer);
    no_sdp.sdp = None;
    assert!(matches!(
        r.signal(no_sdp, 1, nobody_blocked),
        Err(CallError::Invalid(_))
    ));
    assert_eq!(r.len(), 1);
    assert!(r.in_call(A) && r.in_call(B));
}

#[test]
fn disconnects_end_calls_of_active_devices_only() {
    let mut r = registry();
    ringing_call(&mut r);
    // A ringing callee device going away changes nothing.
    assert!(r.disconnect(B, 2, 1).deliveries.is_empty());
    assert_eq!(r.len(), 1);
    // The caller going away while ringing cancels it: missed.
    let out = r.disconnect(A, 1, 2);
    assert_eq!(
        summary(&out),
        vec![(
            B,
            DeviceTarget::All,
            CallAction::Hangup,
            Some(EndReason::Disconnected)
        )]
    );
    assert_eq!(out.missed[0].reason, EndReason::Cancelled);
    assert!(r.is_empty());

    ringing_call(&mut r);
    r.signal(sig("k", (B, 2), A, CallAction::Answer), 1, nobody_blocked)
        .unwrap();
    assert!(
        r.disconnect(B, 3, 2).deliveries.is_empty(),
        "not the active device"
    );
    let out = r.disconnect(B, 2, 3);
    assert_eq!(
        summary(&out),
        vec![(
            A,
            DeviceTarget::Only(1),
            CallAction::Hangup,
            Some(EndReason::Disconnected)
        )]
    );
    assert!(out.missed.is_empty());
    assert!(r.is_empty());
}

#[test]
fn device_targets() {
    assert!(DeviceTarget::All.includes(7));
    assert!(DeviceTarget::Only(7).includes(7) && !DeviceTarget::Only(7).includes(8));
    assert!(!DeviceTarget::AllExcept(7).includes(7) && DeviceTarget::AllExcept(7).includes(8));
}

#[test]
fn ringing_is_known_until_answered() {
    let mut r = registry();
    assert!(!r.is_ringing("k"));
    assert_eq!(r.ringing_call_of(B), None);
    ringing_call(&mut r);
    assert!(r.is_ringing("k"));
    assert_eq!(r.ringing_call_of(B), Some("k"));
    assert_eq!(r.ringing_call_of(A), None, "the caller is not rung");
    r.signal(sig("k", (B, 2), A, CallAction::Answer), 5, nobody_blocked)
        .unwrap();
    assert!(!r.is_ringing("k"));
    assert_eq!(r.ringing_call_of(B), None);
    assert!(r.in_call(A) && r.in_call(B));
}
