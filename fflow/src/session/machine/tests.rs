use super::*;

const PHASES: [Phase; 4] = [
    Phase::Receiving,
    Phase::Joining,
    Phase::Encoding,
    Phase::Done,
];
const STREAMINGS: [Streaming; 4] = [
    Streaming::Undecided,
    Streaming::Starting,
    Streaming::Running,
    Streaming::AtLastByte,
];

/// Every step that moves a session between phases or streaming states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Chunk,
    Part,
    BeginJoin,
    BeginEncode,
    Joined,
    ClaimStreaming,
    StreamingUndecided,
    StreamingRefused,
    StartStreaming,
    StreamingFailed,
    AbandonStreaming,
    MarkDone,
}

const STEPS: [Step; 12] = [
    Step::Chunk,
    Step::Part,
    Step::BeginJoin,
    Step::BeginEncode,
    Step::Joined,
    Step::ClaimStreaming,
    Step::StreamingUndecided,
    Step::StreamingRefused,
    Step::StartStreaming,
    Step::StreamingFailed,
    Step::AbandonStreaming,
    Step::MarkDone,
];

/// An allowed step: from `phase` (any when `None`) and `streaming` (any when `None`) to
/// `to_phase` and `to_streaming` (unchanged when `None`). The first rule that matches applies;
/// a step no rule allows is refused.
struct Rule {
    step: Step,
    phase: Option<Phase>,
    streaming: Option<Streaming>,
    to_phase: Option<Phase>,
    to_streaming: Option<Streaming>,
}

const fn rule(
    step: Step,
    phase: Option<Phase>,
    streaming: Option<Streaming>,
    to_phase: Option<Phase>,
    to_streaming: Option<Streaming>,
) -> Rule {
    Rule {
        step,
        phase,
        streaming,
        to_phase,
        to_streaming,
    }
}

use Phase::{Done, Encoding, Joining, Receiving};
use Streaming::{AtLastByte, Running, Starting, Undecided};

const ANY: Option<Phase> = None;
const ANY_STREAMING: Option<Streaming> = None;
const SAME: Option<Phase> = None;
const SAME_STREAMING: Option<Streaming> = None;

#[rustfmt::skip]
const ALLOWED: &[Rule] = &[
    // Chunks of the upload while it is received; parts while they are joined.
    rule(Step::Chunk, Some(Receiving), ANY_STREAMING, SAME, SAME_STREAMING),
    rule(Step::Part, Some(Joining), ANY_STREAMING, SAME, SAME_STREAMING),
    rule(Step::BeginJoin, Some(Receiving), ANY_STREAMING, Some(Joining), SAME_STREAMING),
    // A running streaming encode finishes the session; otherwise nothing streams any more.
    rule(Step::BeginEncode, Some(Receiving), Some(Running), Some(Encoding), SAME_STREAMING),
    rule(Step::BeginEncode, Some(Receiving), ANY_STREAMING, Some(Encoding), Some(AtLastByte)),
    rule(Step::Joined, Some(Joining), Some(Running), Some(Encoding), SAME_STREAMING),
    rule(Step::Joined, Some(Joining), ANY_STREAMING, Some(Encoding), Some(AtLastByte)),
    rule(Step::ClaimStreaming, Some(Receiving), Some(Undecided), SAME, Some(Starting)),
    rule(Step::StreamingUndecided, ANY, Some(Starting), SAME, Some(Undecided)),
    rule(Step::StreamingRefused, ANY, Some(Starting), SAME, Some(AtLastByte)),
    rule(Step::StartStreaming, Some(Receiving), Some(Starting), SAME, Some(Running)),
    // Too late: the upload moved on while the decision was made.
    rule(Step::StartStreaming, ANY, Some(Starting), SAME, Some(AtLastByte)),
    rule(Step::StreamingFailed, ANY, Some(Running), SAME, Some(AtLastByte)),
    rule(Step::AbandonStreaming, ANY, ANY_STREAMING, SAME, Some(AtLastByte)),
    rule(Step::MarkDone, Some(Joining), ANY_STREAMING, Some(Done), SAME_STREAMING),
    rule(Step::MarkDone, Some(Encoding), ANY_STREAMING, Some(Done), SAME_STREAMING),
];

/// A whole upload of 10 bytes, all received, in `phase` and `streaming`: only the state decides
/// whether a step is allowed.
fn complete_in(phase: Phase, streaming: Streaming) -> Machine {
    let mut machine = Machine::new(Start {
        encodable: true,
        streaming_allowed: true,
        total_bytes: Some(10),
        epoch: 0,
    });
    machine.received = 10;
    machine.phase = phase;
    machine.streaming = streaming;
    machine
}

fn take(machine: &mut Machine, step: Step) -> Result<(), Refusal> {
    let chunk = Chunk {
        offset: 0,
        declared_len: Some(10),
        max_bytes: 100,
    };
    match step {
        Step::Chunk => machine
            .accept_chunk(Writer::Upload { epoch: 0 }, &chunk)
            .map(|_| ()),
        Step::Part => machine.accept_chunk(Writer::Join, &chunk).map(|_| ()),
        Step::BeginJoin => machine.begin_join(),
        Step::BeginEncode => machine.begin_encode().map(|_| ()),
        Step::Joined => machine.joined().map(|_| ()),
        Step::ClaimStreaming => machine.claim_streaming_decision().map(|_| ()),
        Step::StreamingUndecided => machine.streaming_undecided(),
        Step::StreamingRefused => machine.streaming_refused(),
        Step::StartStreaming => machine.start_streaming().map(|_| ()),
        Step::StreamingFailed => machine.streaming_failed().map(|_| ()),
        Step::AbandonStreaming => {
            machine.abandon_streaming();
            Ok(())
        }
        Step::MarkDone => machine.mark_done(),
    }
}

#[test]
fn every_step_from_every_state_is_allowed_or_refused_as_the_table_says() {
    let mut allowed = 0;
    for phase in PHASES {
        for streaming in STREAMINGS {
            for step in STEPS {
                let rule = ALLOWED.iter().find(|rule| {
                    rule.step == step
                        && rule.phase.is_none_or(|from| from == phase)
                        && rule.streaming.is_none_or(|from| from == streaming)
                });
                let before = complete_in(phase, streaming);
                let mut machine = before.clone();
                let taken = take(&mut machine, step);
                let case = format!("{step:?} from {phase:?}, {streaming:?}");
                match rule {
                    Some(rule) => {
                        allowed += 1;
                        assert_eq!(taken, Ok(()), "{case}");
                        let expected = (
                            rule.to_phase.unwrap_or(phase),
                            rule.to_streaming.unwrap_or(streaming),
                        );
                        assert_eq!((machine.phase, machine.streaming), expected, "{case}");
                    }
                    None => {
                        assert_eq!(taken, Err(Refusal::NotNow), "{case}");
                        assert_eq!(machine, before, "a refused {case} changed the session");
                    }
                }
            }
        }
    }
    // 4 chunk, 4 part, 4 join, 4 + 4 encode, 1 claim, 4 + 4 + 4 (starting), 4 failed,
    // 16 abandon, 8 done.
    assert_eq!(allowed, 61);
}

fn receiving(total_bytes: Option<u64>) -> Machine {
    Machine::new(Start {
        encodable: true,
        streaming_allowed: true,
        total_bytes,
        epoch: 0,
    })
}

fn chunk(offset: u64, declared_len: Option<u64>) -> Chunk {
    Chunk {
        offset,
        declared_len,
        max_bytes: 4,
    }
}

#[test]
fn a_chunk_is_refused_past_the_bytes_received_or_the_length_or_the_chunk_limit() {
    let mut machine = receiving(Some(10));
    let upload = Writer::Upload { epoch: 0 };
    machine.accept_chunk(upload, &chunk(0, Some(3))).unwrap();
    machine.chunk_written(3);
    let before = machine.clone();
    assert_eq!(
        machine.accept_chunk(upload, &chunk(4, None)),
        Err(Refusal::OffsetGap {
            offset: 4,
            received: 3
        })
    );
    assert_eq!(
        machine.accept_chunk(upload, &chunk(3, Some(5))),
        Err(Refusal::ChunkTooLarge { max: 4 })
    );
    let near_the_end = Chunk {
        offset: 8,
        declared_len: None,
        max_bytes: 4,
    };
    assert_eq!(
        machine.check_growth(&near_the_end, 3),
        Err(Refusal::LengthExceeded { end: 11, total: 10 })
    );
    assert_eq!(machine, before);
    // A chunk sent again from an earlier offset is taken: the bytes received go back to it.
    assert_eq!(
        machine.accept_chunk(upload, &chunk(1, Some(2))),
        Ok(Accepted {
            persist_epoch: false,
            fed: 0
        })
    );
    assert_eq!(machine.received(), 1);
}

#[test]
fn a_writer_below_the_highest_epoch_is_refused_and_a_higher_one_is_persisted() {
    let mut machine = receiving(Some(10));
    let accepted = machine
        .accept_chunk(Writer::Upload { epoch: 3 }, &chunk(0, Some(2)))
        .unwrap();
    assert!(accepted.persist_epoch);
    machine.chunk_written(2);
    assert_eq!(machine.epoch(), 3);

    let before = machine.clone();
    for epoch in [0, 2] {
        assert_eq!(
            machine.accept_chunk(Writer::Upload { epoch }, &chunk(2, Some(2))),
            Err(Refusal::StaleWriter { epoch, highest: 3 })
        );
    }
    assert_eq!(machine, before, "a stale writer changes nothing");

    let same = machine
        .accept_chunk(Writer::Upload { epoch: 3 }, &chunk(2, Some(2)))
        .unwrap();
    assert!(!same.persist_epoch);
    machine.chunk_written(4);
    // A newer writer refused for its offset does not take the lease over.
    assert_eq!(
        machine.accept_chunk(Writer::Upload { epoch: 5 }, &chunk(6, Some(1))),
        Err(Refusal::OffsetGap {
            offset: 6,
            received: 4
        })
    );
    assert_eq!(machine.epoch(), 3);
}

#[test]
fn the_join_is_fenced_by_no_epoch() {
    let mut machine = Machine::new(Start {
        encodable: true,
        streaming_allowed: false,
        total_bytes: None,
        epoch: 7,
    });
    machine.begin_join().unwrap();
    let accepted = machine.accept_chunk(Writer::Join, &chunk(0, None)).unwrap();
    assert!(!accepted.persist_epoch);
    assert_eq!(machine.epoch(), 7);
}

#[test]
fn encoding_needs_the_whole_upload_and_a_target() {
    let mut machine = receiving(Some(10));
    assert_eq!(
        machine.begin_encode(),
        Err(Refusal::Incomplete {
            received: 0,
            total: 10
        })
    );
    let mut deferred = receiving(None);
    deferred.received = 4;
    assert_eq!(deferred.begin_encode(), Ok(Encoder::CompleteSource));
    assert_eq!(deferred.total_bytes(), Some(4));

    let mut partial = Machine::new(Start {
        encodable: false,
        streaming_allowed: true,
        total_bytes: Some(0),
        epoch: 0,
    });
    assert_eq!(partial.begin_encode(), Err(Refusal::NotEncodable));
    assert_eq!(partial.begin_join(), Err(Refusal::NotEncodable));
    assert_eq!(partial.claim_streaming_decision(), Err(Refusal::NotNow));
}

#[test]
fn a_length_is_given_once() {
    let mut machine = receiving(None);
    assert_eq!(machine.give_length(5), Ok(true));
    assert_eq!(machine.give_length(5), Ok(false));
    assert_eq!(
        machine.give_length(6),
        Err(Refusal::LengthMismatch { known: 5, given: 6 })
    );
}

#[test]
fn only_an_upload_of_known_length_is_streamed() {
    assert_eq!(
        receiving(None).claim_streaming_decision(),
        Err(Refusal::NotNow)
    );
    let mut off = Machine::new(Start {
        encodable: true,
        streaming_allowed: false,
        total_bytes: Some(10),
        epoch: 0,
    });
    assert_eq!(off.claim_streaming_decision(), Err(Refusal::NotNow));
    let mut known = receiving(Some(10));
    assert_eq!(known.claim_streaming_decision(), Ok(0));
    assert_eq!(
        known.start_streaming(),
        Ok(StreamStart::Started { received: 0 })
    );
}

#[test]
fn ffmpeg_is_fed_what_arrived_until_the_last_byte() {
    let mut machine = receiving(Some(6));
    machine.received = 4;
    assert_eq!(machine.feed_window(0, 3), Feed::Read { len: 3 });
    machine.fed_to(3);
    assert_eq!(machine.feed_window(3, 3), Feed::Read { len: 1 });
    assert_eq!(machine.feed_window(4, 3), Feed::Wait);
    assert_eq!(machine.feed_window(6, 3), Feed::End);
    assert_eq!(
        machine
            .accept_chunk(Writer::Upload { epoch: 0 }, &chunk(2, None))
            .map(|accepted| accepted.fed),
        Ok(3)
    );
    assert!(!machine.abandon_streaming(), "nothing was running");
    assert_eq!(machine.fed, 0);
}

#[test]
fn a_reloaded_session_carries_on_where_its_record_says() {
    let start = Start {
        encodable: true,
        streaming_allowed: true,
        total_bytes: Some(10),
        epoch: 4,
    };
    let finished = Machine::reloaded(start, 10, true, false);
    assert_eq!(finished.phase(), Phase::Encoding);
    assert_eq!(finished.epoch(), 4);
    // A source longer than announced (a write cut short) counts only the announced bytes.
    let receiving = Machine::reloaded(start, 12, false, false);
    assert_eq!(
        (receiving.phase(), receiving.received()),
        (Phase::Receiving, 10)
    );
    assert_eq!(
        Machine::reloaded(start, 3, true, false).phase(),
        Phase::Receiving
    );
    assert_eq!(
        Machine::reloaded(start, 0, false, true).phase(),
        Phase::Joining
    );
}
