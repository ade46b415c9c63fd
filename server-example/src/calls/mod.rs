//! Voice and video call signalling: [`CallRegistry`], a state machine with no I/O.
//!
//! The server relays WebRTC signalling between two users; media flows peer to peer (or
//! through a TURN server) and never through here. The registry decides who receives which
//! `call` frame and keeps the rules the relay alone cannot:
//!
//! - an `offer` from A to B rings every device of B ([`DeviceTarget::All`]);
//! - the first callee device to `answer` wins: the call becomes active between the caller's
//!   device and that one, and B's other devices get a `hangup` with reason
//!   `answered_elsewhere`; a later `answer` from another device gets the same hangup;
//! - `ringing`, `answer`, `reject`, `hangup` and `ice` are relayed between the two parties'
//!   active devices (while ringing, the caller's `ice` goes to all of B's devices);
//! - a user in a call is `busy`: an offer to (or from) them is answered with a `hangup` with
//!   reason `busy` to the offering device and creates nothing;
//! - a call that rings for [`CallConfig::ring_timeout_ms`] (45 s) ends: both sides get a
//!   `hangup` with reason `timeout`, and [`CallRegistry::expire`] returns a [`MissedCall`]
//!   for which the messaging layer writes a system message in the chat;
//! - blocked users cannot call: an offer between two users either of whom blocked the other
//!   is refused with [`CallError::Blocked`] (an `error` frame, `forbidden`).
//!
//! Time comes in as an argument (`now_ms`) and blocks through a closure, so every transition
//! is tested without a socket or a clock. Frames the server itself generates (busy, timeout,
//! answered elsewhere, disconnected) carry a `reason`, and their `from_user_id` is the
//! recipient's peer in the call, so a client can always key the call by `call_id` and peer.
//!
//! Wire shape: a client sends `{"type":"call","data":{"call_id","to_user_id","action",
//! "sdp"?,"candidate"?}}`; each [`Delivery`] is `{"type":"call","data":{"call_id",
//! "from_user_id","action","sdp"?,"candidate"?,"reason"?}}` ([`Delivery::frame`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest `call_id`, in bytes.
pub const CALL_ID_BYTES_MAX: usize = 128;

/// Longest SDP relayed, in bytes.
pub const SDP_BYTES_MAX: usize = 64 * 1024;

/// Default ringing timeout: 45 s.
pub const RING_TIMEOUT_MS_DEFAULT: u64 = 45_000;

/// Configuration of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallConfig {
    /// How long a call may ring unanswered before it ends as missed.
    pub ring_timeout_ms: u64,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            ring_timeout_ms: RING_TIMEOUT_MS_DEFAULT,
        }
    }
}

/// A signalling action, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallAction {
    /// SDP offer: starts a call (or renegotiates an active one).
    Offer,
    /// SDP answer.
    Answer,
    /// An ICE candidate.
    Ice,
    /// A callee device is ringing.
    Ringing,
    /// The callee declines.
    Reject,
    /// Either side ends the call.
    Hangup,
}

/// Why the server ended a call or sent a frame itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The peer is in another call.
    Busy,
    /// Nobody answered within the ringing timeout.
    Timeout,
    /// Another device of the same user answered first.
    AnsweredElsewhere,
    /// Another device of the same user declined.
    RejectedElsewhere,
    /// The caller hung up before anyone answered.
    Cancelled,
    /// The callee declined.
    Rejected,
    /// A party hung up.
    Hangup,
    /// A party's device went away (its connection closed).
    Disconnected,
}

/// A `call` frame from a client, with the sender taken from its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The call, chosen by the caller.
    pub call_id: String,
    /// The sending user (from the token, never from the body).
    pub from_user_id: u64,
    /// The sending device.
    pub from_device_id: u32,
    /// The other party.
    pub to_user_id: u64,
    /// What happens.
    pub action: CallAction,
    /// SDP, for offer and answer.
    pub sdp: Option<String>,
    /// ICE candidate (opaque JSON), for ice.
    pub candidate: Option<serde_json::Value>,
}

/// The `data` of a `call` frame the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallEvent {
    /// The call.
    pub call_id: String,
    /// The sender, or for frames the server generates, the recipient's peer in the call.
    pub from_user_id: String,
    /// What happens.
    pub action: CallAction,
    /// SDP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    /// ICE candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<serde_json::Value>,
    /// Set on frames the server generates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
}

/// Which devices of a user a frame goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceTarget {
    /// Every connected device of the user.
    All,
    /// This device only.
    Only(u32),
    /// Every connected device but this one.
    AllExcept(u32),
}

impl DeviceTarget {
    /// Whether `device_id` is targeted.
    pub fn includes(self, device_id: u32) -> bool {
        match self {
            Self::All => true,
            Self::Only(d) => d == device_id,
            Self::AllExcept(d) => d != device_id,
        }
    }
}

/// A frame to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The recipient.
    pub user_id: u64,
    /// Which of their devices.
    pub devices: DeviceTarget,
    /// The frame's `data`.
    pub event: CallEvent,
}

impl Delivery {
    /// The whole frame: `{"type": "call", "data": {...}}`.
    pub fn frame(&self) -> serde_json::Value {
        serde_json::json!({ "type": "call", "data": self.event })
    }
}

/// A call that ended without being answered: the messaging layer writes a `system` message
/// ("missed call") in the direct chat of `caller` and `callee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedCall {
    /// The call.
    pub call_id: String,
    /// Who called.
    pub caller: u64,
    /// Who did not answer.
    pub callee: u64,
    /// When it started ringing.
    pub started_at_ms: u64,
    /// When it ended.
    pub ended_at_ms: u64,
    /// [`EndReason::Timeout`] or [`EndReason::Cancelled`] (the caller gave up first).
    pub reason: EndReason,
}

/// What a transition produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Frames to deliver, in order.
    pub deliveries: Vec<Delivery>,
    /// Calls that ended unanswered.
    pub missed: Vec<MissedCall>,
}

/// A refused signal. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Either user has blocked the other.
    #[error("this user does not accept calls from you")]
    Blocked,
    /// A malformed signal (self-call, wrong peer, missing SDP, oversized field).
    #[error("{0}")]
    Invalid(String),
    /// No such call, or the sender is not one of its active parties.
    #[error("no such call")]
    UnknownCall,
    /// The action does not fit the call's state (e.g. `answer` from the caller while ringing).
    #[error("`{action:?}` is not allowed now")]
    WrongState {
        /// The refused action.
        action: CallAction,
    },
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Blocked => ApiError::Forbidden(error.to_string()),
            CallError::Invalid(m) => ApiError::InvalidRequest(m),
            CallError::UnknownCall => ApiError::NotFound(error.to_string()),
            e @ CallError::WrongState { .. } => ApiError::Conflict(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    /// Answered by this callee device.
    Active {
        callee_device: u32,
    },
}

#[derive(Debug, Clone)]
struct Call {
    caller: u64,
    caller_device: u32,
    callee: u64,
    phase: Phase,
    started_at_ms: u64,
}

impl Call {
    fn peer_of(&self, user: u64) -> u64 {
        if user == self.caller {
            self.callee
        } else {
            self.caller
        }
    }
}

/// The calls in progress. See the module docs for the rules.
#[derive(Debug, Default)]
pub struct CallRegistry {
    config: CallConfig,
    calls: HashMap<String, Call>,
    /// The call each user is in (as caller or callee).
    by_user: HashMap<u64, String>,
}

fn event(call_id: &str, from: u64, action: CallAction, reason: Option<EndReason>) -> CallEvent {
    CallEvent {
        call_id: call_id.to_owned(),
        from_user_id: from.to_string(),
        action,
        sdp: None,
        candidate: None,
        reason,
    }
}

fn relay(signal: Signal) -> CallEvent {
    CallEvent {
        call_id: signal.call_id,
        from_user_id: signal.from_user_id.to_string(),
        action: signal.action,
        sdp: signal.sdp,
        candidate: signal.candidate,
        reason: None,
    }
}

impl CallRegistry {
    /// An empty registry.
    pub fn new(config: CallConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Calls in progress (ringing or active).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is in progress.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Whether `user_id` is in a call (ringing or active).
    pub fn in_call(&self, user_id: u64) -> bool {
        self.by_user.contains_key(&user_id)
    }

    /// Whether the call `call_id` is ringing (offered, not yet answered or ended).
    pub fn is_ringing(&self, call_id: &str) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| c.phase == Phase::Ringing)
    }

    /// The call ringing for `callee`, if one is (the devices of a callee that connect while it
    /// rings should ring too).
    pub fn ringing_call_of(&self, callee: u64) -> Option<&str> {
        let call_id = self.by_user.get(&callee)?;
        let call = self.calls.get(call_id)?;
        (call.callee == callee && call.phase == Phase::Ringing).then_some(call_id.as_str())
    }

    /// When [`CallRegistry::expire`] next has something to do, if any call is ringing.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.calls
            .values()
            .filter(|c| c.phase == Phase::Ringing)
            .map(|c| c.started_at_ms + self.config.ring_timeout_ms)
            .min()
    }

    /// Applies a client's `call` frame. `is_blocked(blocker, blocked)` answers whether
    /// `blocker` has blocked `blocked`.
    pub fn signal(
        &mut self,
        signal: Signal,
        now_ms: u64,
        is_blocked: impl Fn(u64, u64) -> bool,
    ) -> Result<Outcome, CallError> {
        if signal.call_id.is_empty() || signal.call_id.len() > CALL_ID_BYTES_MAX {
            return Err(CallError::Invalid(format!(
                "call_id must be 1 to {CALL_ID_BYTES_MAX} bytes"
            )));
        }
        if signal.sdp.as_ref().is_some_and(|s| s.len() > SDP_BYTES_MAX) {
            return Err(CallError::Invalid(format!(
                "sdp is longer than {SDP_BYTES_MAX} bytes"
            )));
        }
        if signal.from_user_id == signal.to_user_id {
            return Err(CallError::Invalid("a user cannot call themselves".into()));
        }
        let Some(call) = self.calls.get(&signal.call_id) else {
            return match signal.action {
                CallAction::Offer => self.offer(signal, now_ms, is_blocked),
                // Hanging up a call that already ended is harmless (both sides may hang up).
                CallAction::Hangup => Ok(Outcome::default()),
                _ => Err(CallError::UnknownCall),
            };
        };
        let from = signal.from_user_id;
        if from != call.caller && from != call.callee {
            return Err(CallError::UnknownCall);
        }
        if signal.to_user_id != call.peer_of(from) {
            return Err(CallError::Invalid(
                "to_user_id is not the other party of this call".into(),
            ));
        }
        let call = call.clone();
        let device = signal.from_device_id;
        let from_caller = from == call.caller;
        if from_caller && device != call.caller_device {
            return Err(CallError::UnknownCall);
        }
        let call_id = signal.call_id.clone();
        let mut out = Outcome::default();
        match (call.phase, from_caller, signal.action) {
            // ---- ringing ----
            (Phase::Ringing, true, CallAction::Ice) => {
                out.deliveries.push(Delivery {
                    user_id: call.callee,
                    devices: DeviceTarget::All,
                    event: relay(signal),
                });
            }
            (Phase::Ringing, true, CallAction::Hangup) => {
                out.deliveries.push(Delivery {
                    user_id: call.callee,
                    devices: DeviceTarget::All,
                    event: event(&call_id, call.caller, CallAction::Hangup, None),
                });
                out.missed
                    .push(self.end_missed(&call_id, now_ms, EndReason::Cancelled));
            }
            (Phase::Ringing, false, CallAction::Ringing) => {
                out.deliveries.push(self.to_caller(&call, relay(signal)));
            }
            (Phase::Ringing, false, CallAction::Ice) => {
                out.deliveries.push(self.to_caller(&call, relay(signal)));
            }
            (Phase::Ringing, false, CallAction::Answer) => {
                if signal.sdp.is_none() {
                    return Err(CallError::Invalid("an answer carries sdp".into()));
                }
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.phase = Phase::Active {
                        callee_device: device,
                    };
                }
                out.deliveries.push(self.to_caller(&call, relay(signal)));
                out.deliveries.push(Delivery {
                    user_id: call.callee,
                    devices: DeviceTarget::AllExcept(device),
                    event: event(
                        &call_id,
                        call.caller,
                        CallAction::Hangup,
                        Some(EndReason::AnsweredElsewhere),
                    ),
                });
            }
            (Phase::Ringing, false, CallAction::Reject | CallAction::Hangup) => {
                out.deliveries.push(self.to_caller(&call, relay(signal)));
                out.deliveries.push(Delivery {
                    user_id: call.callee,
                    devices: DeviceTarget::AllExcept(device),
                    event: event(
                        &call_id,
                        call.caller,
                        CallAction::Hangup,
                        Some(EndReason::RejectedElsewhere),
                    ),
                });
                self.remove(&call_id);
            }
            // ---- active ----
            (Phase::Active { callee_device }, false, _) if device != callee_device => {
                // A late device of the callee: the call was answered elsewhere.
                if signal.action == CallAction::Hangup || signal.action == CallAction::Reject {
                    return Ok(out);
                }
                out.deliveries.push(Delivery {
                    user_id: call.callee,
                    devices: DeviceTarget::Only(device),
                    event: event(
                        &call_id,
                        call.caller,
                        CallAction::Hangup,
                        Some(EndReason::AnsweredElsewhere),
                    ),
                });
            }
            (
                Phase::Active { callee_device },
                _,
                CallAction::Offer | CallAction::Answer | CallAction::Ice,
            ) => {
                // Renegotiation and trickle ICE between the two active devices.
                out.deliveries.push(Self::to_peer(
                    &call,
                    callee_device,
                    from_caller,
                    relay(signal),
                ));
            }
            (Phase::Active { callee_device }, _, CallAction::Hangup) => {
                out.deliveries.push(Self::to_peer(
                    &call,
                    callee_device,
                    from_caller,
                    relay(signal),
                ));
                self.remove(&call_id);
            }
            (_, _, action) => return Err(CallError::WrongState { action }),
        }
        Ok(out)
    }

    fn offer(
        &mut self,
        signal: Signal,
        now_ms: u64,
        is_blocked: impl Fn(u64, u64) -> bool,
    ) -> Result<Outcome, CallError> {
        let (caller, callee) = (signal.from_user_id, signal.to_user_id);
        if is_blocked(callee, caller) || is_blocked(caller, callee) {
            return Err(CallError::Blocked);
        }
        if signal.sdp.is_none() {
            return Err(CallError::Invalid("an offer carries sdp".into()));
        }
        if self.in_call(caller) || self.in_call(callee) {
            return Ok(Outcome {
                deliveries: vec![Delivery {
                    user_id: caller,
                    devices: DeviceTarget::Only(signal.from_device_id),
                    event: event(
                        &signal.call_id,
                        callee,
                        CallAction::Hangup,
                        Some(EndReason::Busy),
                    ),
                }],
                missed: Vec::new(),
            });
        }
        let call_id = signal.call_id.clone();
        self.calls.insert(
            call_id.clone(),
            Call {
                caller,
                caller_device: signal.from_device_id,
                callee,
                phase: Phase::Ringing,
                started_at_ms: now_ms,
            },
        );
        self.by_user.insert(caller, call_id.clone());
        self.by_user.insert(callee, call_id);
        Ok(Outcome {
            deliveries: vec![Delivery {
                user_id: callee,
                devices: DeviceTarget::All,
                event: relay(signal),
            }],
            missed: Vec::new(),
        })
    }

    /// Ends every call that has rung for the ringing timeout by `now_ms`: both sides get a
    /// `hangup` with reason `timeout`, and each call is returned as a [`MissedCall`].
    pub fn expire(&mut self, now_ms: u64) -> Outcome {
        let timeout = self.config.ring_timeout_ms;
        let mut due: Vec<(u64, String)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.phase == Phase::Ringing && now_ms >= c.started_at_ms + timeout)
            .map(|(id, c)| (c.started_at_ms, id.clone()))
            .collect();
        due.sort();
        let mut out = Outcome::default();
        for (_, call_id) in due {
            let call = self.calls[&call_id].clone();
            out.deliveries.push(self.to_caller(
                &call,
                event(
                    &call_id,
                    call.callee,
                    CallAction::Hangup,
                    Some(EndReason::Timeout),
                ),
            ));
            out.deliveries.push(Delivery {
                user_id: call.callee,
                devices: DeviceTarget::All,
                event: event(
                    &call_id,
                    call.caller,
                    CallAction::Hangup,
                    Some(EndReason::Timeout),
                ),
            });
            out.missed
                .push(self.end_missed(&call_id, now_ms, EndReason::Timeout));
        }
        out
    }

    /// A device's connection closed: ends the calls it was an active party of (the peer gets a
    /// `hangup` with reason `disconnected`). A ringing callee device going away changes nothing
    /// (the others still ring); a caller going away while ringing cancels the call (missed).
    pub fn disconnect(&mut self, user_id: u64, device_id: u32, now_ms: u64) -> Outcome {
        let mut out = Outcome::default();
        let Some(call_id) = self.by_user.get(&user_id).cloned() else {
            return out;
        };
        let call = self.calls[&call_id].clone();
        let is_caller_device = user_id == call.caller && device_id == call.caller_device;
        match call.phase {
            Phase::Ringing if is_caller_device => {
                out.deliveries.push(Delivery {
                    user_id: call.callee,
                    devices: DeviceTarget::All,
                    event: event(
                        &call_id,
                        call.caller,
                        CallAction::Hangup,
                        Some(EndReason::Disconnected),
                    ),
                });
                out.missed
                    .push(self.end_missed(&call_id, now_ms, EndReason::Cancelled));
            }
            Phase::Active { callee_device }
                if is_caller_device || (user_id == call.callee && device_id == callee_device) =>
            {
                let peer = call.peer_of(user_id);
                let peer_event = event(
                    &call_id,
                    user_id,
                    CallAction::Hangup,
                    Some(EndReason::Disconnected),
                );
                out.deliveries.push(Self::to_peer(
                    &call,
                    callee_device,
                    user_id == call.caller,
                    peer_event,
                ));
                debug_assert_eq!(out.deliveries[0].user_id, peer);
                self.remove(&call_id);
            }
            _ => {}
        }
        out
    }

    fn to_caller(&self, call: &Call, event: CallEvent) -> Delivery {
        Delivery {
            user_id: call.caller,
            devices: DeviceTarget::Only(call.caller_device),
            event,
        }
    }

    fn to_peer(call: &Call, callee_device: u32, from_caller: bool, event: CallEvent) -> Delivery {
        if from_caller {
            Delivery {
                user_id: call.callee,
                devices: DeviceTarget::Only(callee_device),
                event,
            }
        } else {
            Delivery {
                user_id: call.caller,
                devices: DeviceTarget::Only(call.caller_device),
                event,
            }
        }
    }

    fn end_missed(&mut self, call_id: &str, now_ms: u64, reason: EndReason) -> MissedCall {
        let call = self.remove(call_id);
        MissedCall {
            call_id: call_id.to_owned(),
            caller: call.caller,
            callee: call.callee,
            started_at_ms: call.started_at_ms,
            ended_at_ms: now_ms,
            reason,
        }
    }

    /// # Panics
    /// If `call_id` is not in progress (callers look it up first).
    fn remove(&mut self, call_id: &str) -> Call {
        let call = self
            .calls
            .remove(call_id)
            .expect("the call being ended is in progress");
        for user in [call.caller, call.callee] {
            if self.by_user.get(&user).is_some_and(|id| id == call_id) {
                self.by_user.remove(&user);
            }
        }
        call
    }
}

#[cfg(test)]
mod tests;
