//! The jq worker's side: `spillway jq-worker`, a child process of a
//! running pipeline that runs the jq programs on each record it is sent
//! (see [`super::worker`] for why a process, [`super::wire`] for the
//! frames).
//!
//! Whatever a record makes a program do here, the pipeline survives it: a
//! recursion without end overflows this process's stack, a runaway
//! allocation meets [`MEMORY_LIMIT`], and both end this process only; a
//! loop without end is killed by the pipeline when the record's time is up.

use std::io::{self, BufReader, BufWriter, Write};
use std::sync::Arc;

use super::wire;
use super::{reply, Program, Step, StepKind};

/// The address space a worker may use: ample for a 16 MiB record parsed
/// several times over, far below the machine's memory.
pub const MEMORY_LIMIT: u64 = 2 << 30;

/// Runs until the pipeline closes the worker's input; the exit code.
pub fn serve() -> i32 {
    die_with_the_pipeline();
    limit_memory();
    let mut input = BufReader::with_capacity(1 << 20, io::stdin().lock());
    let mut output = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let steps = match read_steps(&mut input) {
        Ok(steps) => steps,
        Err(why) => {
            eprintln!("spillway jq-worker: {why}");
            return 2;
        }
    };
    loop {
        let data = match wire::read_frame(&mut input) {
            Ok(Some(data)) => data,
            Ok(None) => return 0,
            Err(err) => {
                eprintln!("spillway jq-worker: reading a record: {err}");
                return 2;
            }
        };
        let data = bytes::Bytes::from(data);
        let answer = reply(&steps, &data);
        drop(data);
        let written = wire::write_frame(&mut output, &wire::encode_reply(&answer));
        // Flush when no record waits: replies go out in batches while the
        // pipeline keeps sending, at once when it waits for them.
        let flushed = match input.buffer().is_empty() {
            true => written.and_then(|()| output.flush()),
            false => written,
        };
        if flushed.is_err() {
            // The pipeline is gone.
            return 0;
        }
    }
}

/// The first frame: the programs, `[[kind, query], ...]`.
fn read_steps(input: &mut impl io::Read) -> Result<Vec<Step>, String> {
    let frame = wire::read_frame(input)
        .map_err(|err| format!("reading the programs: {err}"))?
        .ok_or("no programs were sent")?;
    let programs: Vec<(String, String)> =
        serde_json::from_slice(&frame).map_err(|err| format!("the programs are not [[kind, query]]: {err}"))?;
    programs
        .into_iter()
        .map(|(kind, query)| {
            let kind = match kind.as_str() {
                "filter" => StepKind::Filter,
                "metadata" => StepKind::Metadata,
                other => return Err(format!("unknown program kind {other:?}")),
            };
            let program = Program::compile(&query).map_err(|why| format!("{query:?} {why}"))?;
            Ok(Step {
                kind,
                query: query.into(),
                program: Arc::new(program),
            })
        })
        .collect()
}

/// The programs as the first frame says them.
pub fn encode_steps(steps: &[Step]) -> Vec<u8> {
    let programs: Vec<(&str, &str)> = steps
        .iter()
        .map(|step| {
            let kind = match step.kind {
                StepKind::Filter => "filter",
                StepKind::Metadata => "metadata",
            };
            (kind, &*step.query)
        })
        .collect();
    serde_json::to_vec(&programs).expect("strings serialise")
}

/// A worker busy in an endless program never reads its input again, so it
/// would not see the pipeline die (`kill -9`): the kernel kills it then.
/// A parent gone before this call is seen as a closed input. The signal
/// follows the thread that started the worker: workers are started from
/// the runtime's own threads (never a blocking-pool thread, which exits
/// when idle), and those live as long as the pipeline.
fn die_with_the_pipeline() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number only.
        let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        if set != 0 {
            eprintln!(
                "spillway jq-worker: cannot ask to die with the pipeline: {}",
                io::Error::last_os_error()
            );
        }
    }
}

fn limit_memory() {
    let limit = libc::rlimit {
        rlim_cur: MEMORY_LIMIT,
        rlim_max: MEMORY_LIMIT,
    };
    // SAFETY: setrlimit reads the struct it is given and nothing else.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if set != 0 {
        eprintln!(
            "spillway jq-worker: cannot limit memory: {}",
            io::Error::last_os_error()
        );
    }
}

/// What a failed record's reply says (for tests of the worker's side).
#[cfg(test)]
fn failed(reply: &wire::Reply) -> Option<&str> {
    match reply {
        wire::Reply::Failed { code, .. } => Some(code),
        wire::Reply::Outputs(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_go_over_the_wire_and_compile_again() {
        let steps = vec![
            Step {
                kind: StepKind::Filter,
                query: "select(.a) | del(.b)".into(),
                program: Arc::new(Program::compile("select(.a) | del(.b)").unwrap()),
            },
            Step {
                kind: StepKind::Metadata,
                query: "{a: .a}".into(),
                program: Arc::new(Program::compile("{a: .a}").unwrap()),
            },
        ];
        let mut frame = Vec::new();
        wire::write_frame(&mut frame, &encode_steps(&steps)).unwrap();
        let again = read_steps(&mut &frame[..]).unwrap();
        assert_eq!(
            reply(&again, &bytes::Bytes::from_static(br#"{"a":"x","b":1}"#)),
            wire::Reply::Outputs(vec![(br#"{"a":"x"}"#.to_vec(), vec![("a".into(), "x".into())])])
        );
        assert_eq!(
            failed(&reply(&again, &bytes::Bytes::from_static(b"not json"))),
            Some("Jq.InvalidJson")
        );
    }
}
