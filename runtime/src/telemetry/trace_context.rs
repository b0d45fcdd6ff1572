//! Where a request sits in its trace and in a chain of service calls: the
//! W3C trace context the host continues or starts, and the call depth.

use http::HeaderValue;

use crate::random::roll;

/// A W3C trace context (`traceparent`): the trace a request belongs to and
/// the span the host opened for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The span this one is a child of, when there is one.
    pub parent_span_id: Option<u64>,
    pub sampled: bool,
}

impl TraceContext {
    /// A new span of the trace `traceparent` names, or of a new trace when
    /// the header is absent or malformed.
    pub fn continuing(traceparent: Option<&HeaderValue>) -> Self {
        match traceparent.and_then(|v| v.to_str().ok()).and_then(parse) {
            Some((trace_id, parent, sampled)) => Self {
                trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(parent),
                sampled,
            },
            None => Self {
                trace_id: (u128::from(roll()) << 64 | u128::from(roll())).max(1),
                span_id: new_span_id(),
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            parent_span_id: Some(self.span_id),
            ..*self
        }
    }

    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

fn new_span_id() -> u64 {
    roll().max(1)
}

/// `00-{32 hex}-{16 hex}-{2 hex}`, all-zero ids refused (W3C Trace Context).
fn parse(value: &str) -> Option<(u128, u64, bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != 0 && parent_id != 0).then_some((trace_id, parent_id, flags & 1 == 1))
}

/// Where a request sits in a chain of service calls.
#[derive(Debug, Clone, Copy)]
pub struct CallChain {
    /// 0 for a request from a client, 1 for a call it made, and so on.
    pub depth: u32,
    pub trace: TraceContext,
}

impl CallChain {
    pub fn root(trace: TraceContext) -> Self {
        Self { depth: 0, trace }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_continued_or_started() {
        let incoming =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let trace = TraceContext::continuing(Some(&incoming));
        assert_eq!(trace.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_ne!(trace.span_id, 0x00f067aa0ba902b7);
        assert_eq!(trace.parent_span_id, Some(0x00f067aa0ba902b7));
        let child = trace.child();
        assert_eq!(child.trace_id, trace.trace_id);
        assert_eq!(child.parent_span_id, Some(trace.span_id));
        assert!(
            child
                .header()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            let fresh = TraceContext::continuing(Some(&HeaderValue::from_static(bad)));
            assert_ne!(fresh.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736, "{bad}");
        }
    }
}
