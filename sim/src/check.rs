//! The checker's model: each key is a register written by PUTs and DELETEs. An operation that
//! was acknowledged took effect somewhere inside its interval; one that failed may have taken
//! effect at any time after it began (its commit outcome may be unknown), or never. A read (a
//! GET during the workload, or the final read) must see a value some linearization allows.
//! Pure: no IO, times are simulated durations since the start.

use std::time::Duration;

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Absent,
    Data { len: u64, hash: [u8; 32] },
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Absent => write!(f, "absent"),
            Value::Data { len, hash } => write!(f, "{len} bytes {}", hex8(hash)),
        }
    }
}

fn hex8(hash: &[u8; 32]) -> String {
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// One write to a key: a PUT (`Data`) or a DELETE (`Absent`).
#[derive(Debug, Clone)]
pub struct WriteOp {
    pub id: u64,
    pub value: Value,
    pub invoked: Duration,
    /// When it was acknowledged; None: it failed (outcome unknown) or has not answered yet.
    pub acked: Option<Duration>,
}

/// Every write one key saw.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    pub writes: Vec<WriteOp>,
}

impl KeyHistory {
    /// The values a read over `[read_invoked, read_answered]` may return.
    pub fn allowed(&self, read_invoked: Duration, read_answered: Duration) -> Vec<Value> {
        // A write `w` is superseded for this read if an acknowledged write began after `w` was
        // acknowledged and was itself acknowledged before the read began: every linearization
        // orders that one between `w` and the read.
        let superseded = |acked: Option<Duration>| match acked {
            None => false,
            Some(done) => self.writes.iter().any(|o| {
                o.acked
                    .is_some_and(|o_done| o.invoked > done && o_done < read_invoked)
            }),
        };
        let mut allowed = Vec::new();
        // The key's state before any write: absent, acknowledged at time zero.
        if !superseded(Some(Duration::ZERO)) || self.writes.iter().all(|w| w.acked.is_none()) {
            allowed.push(Value::Absent);
        }
        for w in &self.writes {
            if w.invoked < read_answered && !superseded(w.acked) && !allowed.contains(&w.value) {
                allowed.push(w.value);
            }
        }
        allowed
    }

    /// The write that stored `value`, for messages.
    pub fn describe(&self, value: &Value) -> String {
        match self.writes.iter().find(|w| w.value == *value) {
            Some(w) => format!(
                "op {} invoked {:?} acked {:?}",
                w.id,
                w.invoked,
                w.acked.map(|a| format!("{a:?}"))
            ),
            None => "no write".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u8) -> Value {
        Value::Data {
            len: n as u64,
            hash: [n; 32],
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn w(id: u64, value: Value, invoked: u64, acked: Option<u64>) -> WriteOp {
        WriteOp {
            id,
            value,
            invoked: ms(invoked),
            acked: acked.map(ms),
        }
    }

    #[test]
    fn sequential_writes_leave_only_the_last() {
        let h = KeyHistory {
            writes: vec![
                w(1, data(1), 0, Some(10)),
                w(2, data(2), 20, Some(30)),
                w(3, Value::Absent, 40, Some(50)),
            ],
        };
        assert_eq!(h.allowed(ms(60), ms(70)), vec![Value::Absent]);
        assert_eq!(h.allowed(ms(35), ms(36)), vec![data(2)]);
    }

    #[test]
    fn concurrent_writes_allow_either() {
        let h = KeyHistory {
            writes: vec![w(1, data(1), 0, Some(30)), w(2, data(2), 10, Some(20))],
        };
        assert_eq!(h.allowed(ms(40), ms(50)), vec![data(1), data(2)]);
    }

    #[test]
    fn a_failed_write_may_land_late_but_is_not_required() {
        let h = KeyHistory {
            writes: vec![w(1, data(1), 0, None), w(2, data(2), 10, Some(20))],
        };
        assert_eq!(h.allowed(ms(40), ms(50)), vec![data(1), data(2)]);
        let h = KeyHistory {
            writes: vec![w(1, data(1), 0, None)],
        };
        assert_eq!(h.allowed(ms(40), ms(50)), vec![Value::Absent, data(1)]);
    }

    #[test]
    fn a_write_after_the_read_answered_is_not_visible() {
        let h = KeyHistory {
            writes: vec![w(1, data(1), 100, Some(110))],
        };
        assert_eq!(h.allowed(ms(40), ms(50)), vec![Value::Absent]);
    }
}
