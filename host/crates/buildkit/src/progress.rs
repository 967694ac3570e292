//! The Status stream as events: BuildKit resends a vertex on every change
//! and splits logs at arbitrary byte boundaries; callers want each start,
//! end and log line once.

use std::collections::HashMap;

use crate::pb::control::StatusResponse;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    Other(i64),
}

impl Stream {
    fn from_id(id: i64) -> Self {
        match id {
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            other => Stream::Other(other),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Started {
        vertex: String,
        name: String,
    },
    Completed {
        vertex: String,
        name: String,
        cached: bool,
    },
    Failed {
        vertex: String,
        name: String,
        error: String,
    },
    /// One line of a step's output, without its newline.
    Log {
        vertex: String,
        name: String,
        stream: Stream,
        line: String,
    },
}

/// Follows a solve: sees its events, and is asked now and then (every
/// [`STOP_POLL`] while the solve runs) whether to stop it. A plain
/// `FnMut(Event)` closure follows and never stops.
pub trait Follow {
    fn event(&mut self, event: Event);

    /// `Some(why)` cancels the solve: its gRPC call is dropped, which the
    /// daemon takes as the client going away and stops the build.
    fn stop(&mut self) -> Option<String> {
        None
    }
}

impl<F: FnMut(Event)> Follow for F {
    fn event(&mut self, event: Event) {
        self(event);
    }
}

/// How often a running solve asks its [`Follow`] whether to stop.
pub const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Default)]
struct VertexState {
    name: String,
    started: bool,
    done: bool,
    error: Option<String>,
}

#[derive(Default)]
pub struct Tracker {
    vertices: HashMap<String, VertexState>,
    partial: HashMap<(String, Stream), Vec<u8>>,
    // Raw bytes of every vertex's output, in order, for callers that need
    // them exactly (probes): lines are for people.
    raw: HashMap<(String, Stream), Vec<u8>>,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, message: &StatusResponse, emit: &mut dyn FnMut(Event)) {
        for vertex in &message.vertexes {
            let state = self.vertices.entry(vertex.digest.clone()).or_default();
            if !vertex.name.is_empty() {
                state.name.clone_from(&vertex.name);
            }
            if vertex.started.is_some() && !state.started {
                state.started = true;
                emit(Event::Started { vertex: vertex.digest.clone(), name: state.name.clone() });
            }
            if state.done {
                continue;
            }
            if !vertex.error.is_empty() {
                state.done = true;
                state.error = Some(vertex.error.clone());
                emit(Event::Failed {
                    vertex: vertex.digest.clone(),
                    name: state.name.clone(),
                    error: vertex.error.clone(),
                });
            } else if vertex.completed.is_some() {
                state.done = true;
                emit(Event::Completed {
                    vertex: vertex.digest.clone(),
                    name: state.name.clone(),
                    cached: vertex.cached,
                });
            }
        }
        for log in &message.logs {
            let stream = Stream::from_id(log.stream);
            let key = (log.vertex.clone(), stream);
            self.raw.entry(key.clone()).or_default().extend_from_slice(&log.msg);
            let name = self.vertices.get(&log.vertex).map(|v| v.name.clone()).unwrap_or_default();
            let buffer = self.partial.entry(key).or_default();
            buffer.extend_from_slice(&log.msg);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                emit(Event::Log {
                    vertex: log.vertex.clone(),
                    name: name.clone(),
                    stream,
                    line: text(&line[..end]),
                });
            }
        }
    }

    /// Emits the unterminated last lines once the stream has ended.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Event)) {
        let mut rest: Vec<_> = self.partial.drain().filter(|(_, b)| !b.is_empty()).collect();
        rest.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        for ((vertex, stream), bytes) in rest {
            let name = self.vertices.get(&vertex).map(|v| v.name.clone()).unwrap_or_default();
            emit(Event::Log { vertex, name, stream, line: text(&bytes) });
        }
    }

    /// Everything `vertex` wrote to `stream`, byte for byte.
    pub fn output(&self, vertex: &str, stream: Stream) -> &[u8] {
        self.raw.get(&(vertex.to_owned(), stream)).map_or(&[], Vec::as_slice)
    }

    /// Whether the stream said `vertex` completed or failed.
    pub fn finished(&self, vertex: &str) -> bool {
        self.vertices.get(vertex).is_some_and(|v| v.done)
    }

    /// The error BuildKit reported for `vertex`, if it failed.
    pub fn error_of(&self, vertex: &str) -> Option<&str> {
        self.vertices.get(vertex)?.error.as_deref()
    }
}

fn text(bytes: &[u8]) -> String {
    let line = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::control::{Timestamp, Vertex, VertexLog};

    fn vertex(digest: &str, started: bool, completed: bool, error: &str) -> Vertex {
        let at = Some(Timestamp { seconds: 1, nanos: 0 });
        Vertex {
            digest: digest.into(),
            name: format!("step {digest}"),
            cached: false,
            started: if started { at.clone() } else { None },
            completed: if completed { at } else { None },
            error: error.into(),
        }
    }

    fn log(digest: &str, stream: i64, msg: &[u8]) -> VertexLog {
        VertexLog { vertex: digest.into(), stream, msg: msg.to_vec() }
    }

    #[test]
    fn each_transition_is_reported_once_and_lines_are_whole() {
        let mut tracker = Tracker::new();
        let mut events = Vec::new();
        let mut emit = |e| events.push(e);
        let messages = [
            StatusResponse { vertexes: vec![vertex("a", true, false, "")], logs: vec![log("a", 1, b"hel")] },
            StatusResponse {
                vertexes: vec![vertex("a", true, false, "")],
                logs: vec![log("a", 1, b"lo\nwor"), log("a", 2, b"warn\r\n")],
            },
            StatusResponse {
                vertexes: vec![vertex("a", true, true, ""), vertex("b", true, true, "boom")],
                logs: vec![],
            },
            StatusResponse { vertexes: vec![vertex("a", true, true, "")], logs: vec![log("a", 1, b"ld")] },
        ];
        for m in &messages {
            tracker.feed(m, &mut emit);
        }
        tracker.finish(&mut emit);
        let name = "step a".to_owned();
        let a = "a".to_owned();
        assert_eq!(
            events,
            vec![
                Event::Started { vertex: a.clone(), name: name.clone() },
                Event::Log {
                    vertex: a.clone(),
                    name: name.clone(),
                    stream: Stream::Stdout,
                    line: "hello".into()
                },
                Event::Log {
                    vertex: a.clone(),
                    name: name.clone(),
                    stream: Stream::Stderr,
                    line: "warn".into()
                },
                Event::Completed { vertex: a.clone(), name: name.clone(), cached: false },
                Event::Started { vertex: "b".into(), name: "step b".into() },
                Event::Failed { vertex: "b".into(), name: "step b".into(), error: "boom".into() },
                Event::Log { vertex: a, name, stream: Stream::Stdout, line: "world".into() },
            ]
        );
        assert_eq!(tracker.output("a", Stream::Stdout), b"hello\nworld");
        assert_eq!(tracker.output("a", Stream::Stderr), b"warn\r\n");
        assert_eq!(tracker.output("c", Stream::Stdout), b"");
        assert!(tracker.finished("a") && tracker.finished("b") && !tracker.finished("c"));
        assert_eq!((tracker.error_of("a"), tracker.error_of("b")), (None, Some("boom")));
    }
}
