//! The core driven by events: admission, fairness and reconciliation, read
//! from the commands it returns.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use keel_proto::expr::Expr;
use keel_proto::ids::{JobId, StageId, TaskId, WorkerId};
use keel_proto::pb::{
    job_event, task_status, worker_command, RunningTask, TaskFailed, TaskStatus, TaskSucceeded,
};
use keel_proto::plan::{FileSplit, PlanNode, Sink, SortKey};
use keel_proto::task::{decode, TaskDescriptor};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::admission::TASK_BASE_BYTES;
use crate::job::Job;
use crate::planner::stages::{ScanTask, StageGraph, StagePlan, TaskSource};

const MIB: u64 = 1 << 20;
/// A worker with this limit has a 1000 MiB budget (the limit less a fifth).
const LIMIT_FOR_1000MIB: u64 = 1250 * MIB;

struct Harness {
    state: SchedulerState,
    /// Commands the core returned and no check has read yet.
    sent: Vec<Command>,
}

impl Harness {
    fn new(admission: bool) -> Harness {
        let config = SchedulerConfig {
            admission,
            ..Default::default()
        };
        Harness {
            state: SchedulerState::new(config, Arc::new(AtomicUsize::new(1))),
            sent: vec![],
        }
    }

    fn handle(&mut self, event: Event) {
        let commands = self.state.handle(event);
        self.sent.extend(commands);
    }

    /// Takes the worker commands `pick` recognises out of those sent.
    fn take<T>(
        &mut self,
        pick: impl Fn(&WorkerId, &worker_command::Command) -> Option<T>,
    ) -> Vec<T> {
        let mut out = vec![];
        self.sent.retain(|c| match c {
            Command::ToWorker { worker, command } => match pick(worker, command) {
                Some(t) => {
                    out.push(t);
                    false
                }
                None => true,
            },
            _ => true,
        });
        out
    }

    fn worker(&mut self, cores: u32, memory_limit: u64) -> WorkerId {
        let (reply, mut id) = oneshot::channel();
        self.handle(Event::WorkerRegistered {
            flight_url: "http://w".into(),
            cores,
            memory_limit,
            reply,
        });
        let id = id.try_recv().expect("registered");
        let (commands, _) = mpsc::channel(1);
        let (reply, _) = oneshot::channel();
        self.handle(Event::WorkerConnected {
            worker: id.clone(),
            commands,
            reply,
        });
        id
    }

    /// A one-stage job of sort tasks, one per entry of `scan_mib`: each is
    /// estimated at the base plus 1.25 × its bytes.
    fn job(&mut self, name: &str, scan_mib: &[u64]) {
        let schema = Schema::new(vec![Field::new("x", DataType::Int64, true)]);
        let plan = PlanNode::Sort {
            input: Box::new(PlanNode::Scan {
                splits: vec![],
                schema,
                predicate: None,
            }),
            keys: vec![SortKey {
                expr: Expr::Column(0),
                descending: false,
                nulls_first: false,
            }],
            fetch: None,
        };
        let tasks = scan_mib
            .iter()
            .enumerate()
            .map(|(i, mib)| ScanTask {
                splits: vec![FileSplit {
                    path: format!("/{name}/{i}.parquet"),
                    row_groups: vec![0],
                }],
                bytes: mib * MIB,
            })
            .collect();
        let graph = StageGraph {
            stages: vec![StagePlan {
                id: StageId(1),
                plan,
                sink: Sink::Single,
                inputs: vec![],
                tasks: TaskSource::Scan(tasks),
                estimated_rows: 0,
                estimated_bytes: 0,
            }],
            output_schema: Schema::empty(),
            copy_to: None,
        };
        let job = Job::new(JobId(name.into()), String::new(), graph);
        self.handle(Event::JobSubmitted { job: Box::new(job) });
    }

    /// Task launches since the last call: (worker, job, task, attempt).
    fn launched(&mut self) -> Vec<(WorkerId, String, u32, u32)> {
        self.take(|w, c| match c {
            worker_command::Command::LaunchTask(bytes) => {
                let d: TaskDescriptor = decode(bytes).unwrap();
                Some((w.clone(), d.job.0, d.attempt.index(), d.attempt.attempt))
            }
            _ => None,
        })
    }

    fn report(
        &mut self,
        worker: &WorkerId,
        job: &str,
        task: u32,
        attempt: u32,
        result: task_status::Result,
    ) {
        self.handle(Event::TaskReported(TaskStatus {
            worker_id: worker.0.clone(),
            job_id: job.into(),
            stage_id: 1,
            task,
            attempt,
            result: Some(result),
            worker_memory_used: 0,
            worker_memory_pinned: 0,
        }));
    }

    fn succeed(&mut self, worker: &WorkerId, job: &str, task: u32, peak: u64) {
        let stats = TaskSucceeded {
            peak_memory: peak,
            ..Default::default()
        };
        self.report(worker, job, task, 0, task_status::Result::Succeeded(stats));
    }

    /// A heartbeat from `worker` holding `held` (job, task, attempt) of stage 1.
    fn heartbeat(&mut self, worker: &WorkerId, used: u64, pinned: u64, held: &[(&str, u32, u32)]) {
        let (reply, _) = oneshot::channel();
        let running = held
            .iter()
            .map(|(job, task, attempt)| RunningTask {
                job_id: job.to_string(),
                stage_id: 1,
                task: *task,
                attempt: *attempt,
            })
            .collect();
        self.handle(Event::HeartbeatReceived {
            worker: worker.clone(),
            memory_used: used,
            memory_pinned: pinned,
            running,
            reply,
        });
    }

    /// Jobs the workers were told to cancel since the last call.
    fn cancelled(&mut self) -> Vec<String> {
        self.take(|_, c| match c {
            worker_command::Command::CancelJob(job) => Some(job.clone()),
            _ => None,
        })
    }

    fn job_state(&self, job: &str) -> &Job {
        &self.state.jobs[&JobId(job.into())].job
    }
}

fn tasks_of(launched: &[(WorkerId, String, u32, u32)], job: &str) -> Vec<u32> {
    launched
        .iter()
        .filter(|l| l.1 == job)
        .map(|l| l.2)
        .collect()
}

#[test]
fn small_tasks_pack_up_to_the_cores() {
    let mut h = Harness::new(true);
    h.worker(4, LIMIT_FOR_1000MIB);
    h.job("small", &[40; 6]); // about 66 MiB each
    assert_eq!(tasks_of(&h.launched(), "small"), vec![0, 1, 2, 3]);
}

#[test]
fn big_tasks_run_with_fewer_neighbours() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("big", &[320; 4]); // 416 MiB each: two fit in 1000 MiB, three do not
    assert_eq!(tasks_of(&h.launched(), "big"), vec![0, 1]);
    h.succeed(&w, "big", 0, 416 * MIB);
    assert_eq!(tasks_of(&h.launched(), "big"), vec![2]);
}

#[test]
fn admission_off_places_by_cores_alone() {
    let mut h = Harness::new(false);
    h.worker(4, LIMIT_FOR_1000MIB);
    h.job("big", &[320; 4]);
    assert_eq!(tasks_of(&h.launched(), "big"), vec![0, 1, 2, 3]);
}

#[test]
fn a_task_too_big_for_every_worker_runs_alone() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("huge", &[2000, 1]);
    // Alone on the idle worker; the small one waits rather than join it.
    assert_eq!(tasks_of(&h.launched(), "huge"), vec![0]);
    assert!(h.job_state("huge").estimate(TaskId::new(1, 0), None) > 1000 * MIB);
    h.succeed(&w, "huge", 0, 900 * MIB);
    assert_eq!(tasks_of(&h.launched(), "huge"), vec![1]);
}

#[test]
fn later_tasks_are_estimated_from_what_finished_ones_used() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("learn", &[400; 4]); // the model says 516 MiB each: one at a time
    assert_eq!(tasks_of(&h.launched(), "learn"), vec![0]);
    assert_eq!(
        h.job_state("learn").estimate(TaskId::new(1, 1), None),
        TASK_BASE_BYTES + 500 * MIB
    );
    // It really held 116 MiB: 0.25 bytes per input byte.
    h.succeed(&w, "learn", 0, TASK_BASE_BYTES + 100 * MIB);
    assert_eq!(
        h.job_state("learn").estimate(TaskId::new(1, 1), None),
        TASK_BASE_BYTES + 100 * MIB
    );
    assert_eq!(tasks_of(&h.launched(), "learn"), vec![1, 2, 3]);
}

#[test]
fn a_task_that_failed_for_memory_is_retried_with_a_raised_estimate() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("oom", &[200]);
    assert_eq!(h.launched().len(), 1);
    let before = h.job_state("oom").estimate(TaskId::new(1, 0), None);
    let failed = TaskFailed {
        message: "memory exhausted".into(),
        out_of_memory: true,
        ..Default::default()
    };
    h.report(&w, "oom", 0, 0, task_status::Result::Failed(failed));
    let job = h.job_state("oom");
    assert_eq!(job.estimate(TaskId::new(1, 0), None), 2 * before);
    assert_eq!(job.memory_failures, 1);
    assert!(
        job.retries[0].contains("out of memory; estimate raised"),
        "{:?}",
        job.retries
    );
    let relaunched = h.launched();
    assert_eq!(relaunched.len(), 1);
    assert_eq!(relaunched[0].3, 1, "attempt 1");
}

#[test]
fn jobs_take_turns() {
    let mut h = Harness::new(true);
    // Both jobs wait for the worker, so the first dispatch sees both.
    h.job("large", &[40; 8]);
    h.job("small", &[40; 2]);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    let first = h.launched();
    assert_eq!(tasks_of(&first, "large"), vec![0, 1]);
    assert_eq!(tasks_of(&first, "small"), vec![0, 1]);
    // The large job has the fewest running once the small one is done.
    h.succeed(&w, "small", 0, MIB);
    h.job("later", &[40]);
    h.succeed(&w, "small", 1, MIB);
    let next = h.launched();
    assert_eq!(tasks_of(&next, "large"), vec![2]);
    assert_eq!(tasks_of(&next, "later"), vec![0]);
}

#[test]
fn a_blocked_task_holds_one_worker_and_small_jobs_backfill_the_others() {
    let mut h = Harness::new(true);
    let w1 = h.worker(4, LIMIT_FOR_1000MIB);
    let w2 = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("a", &[300, 300]); // 391 MiB each: one per worker
    let spread: Vec<WorkerId> = h.launched().into_iter().map(|l| l.0).collect();
    assert_eq!(spread, vec![w1.clone(), w2.clone()]);
    h.job("huge", &[700]); // 891 MiB: fits beside nothing
    h.job("tiny", &[1]);
    let next = h.launched();
    assert_eq!(tasks_of(&next, "huge"), Vec::<u32>::new());
    // The huge task holds worker 1; the tiny job backfills worker 2.
    assert_eq!(
        next.iter()
            .map(|l| (&l.0, l.1.as_str()))
            .collect::<Vec<_>>(),
        vec![(&w2, "tiny")]
    );
    h.job("filler", &[1]);
    let filler = h.launched();
    assert_eq!(
        filler.iter().map(|l| &l.0).collect::<Vec<_>>(),
        vec![&w2],
        "never on the held worker"
    );
    h.succeed(&w1, "a", 0, 391 * MIB);
    let last = h.launched();
    assert_eq!(
        last.iter()
            .map(|l| (&l.0, l.1.as_str()))
            .collect::<Vec<_>>(),
        vec![(&w1, "huge")]
    );
}

#[test]
fn a_blocked_task_is_not_starved_by_small_ones() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("first", &[300]); // 391 MiB
    assert_eq!(h.launched().len(), 1);
    h.job("huge", &[700]); // 891 MiB: waits for "first"
    h.job("filler", &[40; 4]);
    // The filler would fit beside "first", but the worker is held for "huge".
    assert!(h.launched().is_empty());
    h.succeed(&w, "first", 0, 391 * MIB);
    let next = h.launched();
    assert_eq!(tasks_of(&next, "huge"), vec![0]);
    assert_eq!(
        tasks_of(&next, "filler"),
        vec![0],
        "only one 66 MiB task fits beside 891 MiB"
    );
}

#[test]
fn unspillable_memory_a_worker_reports_counts_against_its_budget() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("first", &[40; 1]);
    assert_eq!(h.launched().len(), 1);
    h.heartbeat(&w, 990 * MIB, 950 * MIB, &[("first", 0, 0)]);
    h.job("second", &[40]);
    assert!(
        h.launched().is_empty(),
        "950 MiB pinned + 66 MiB exceed the budget"
    );
    h.heartbeat(&w, 990 * MIB, 0, &[("first", 0, 0)]);
    assert_eq!(
        tasks_of(&h.launched(), "second"),
        vec![0],
        "spillable memory is no bar"
    );
}

#[test]
fn a_stage_like_one_that_ran_before_starts_from_its_measurements() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("earlier", &[400]);
    assert_eq!(h.launched().len(), 1);
    h.succeed(&w, "earlier", 0, TASK_BASE_BYTES + 100 * MIB);
    // The same operators in a new job: 116 MiB each from the start, not 516.
    h.job("later", &[400; 4]);
    assert_eq!(tasks_of(&h.launched(), "later"), vec![0, 1, 2, 3]);
}

#[test]
fn a_user_error_fails_the_job_at_once() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("div", &[200]);
    assert_eq!(h.launched().len(), 1);
    let failed = TaskFailed {
        message: "Divide by zero error".into(),
        user_error: true,
        ..Default::default()
    };
    h.report(&w, "div", 0, 0, task_status::Result::Failed(failed));
    let job = h.job_state("div");
    match &job.state {
        JobState::Failed(message) => {
            assert_eq!(message, "stage 1 task 0 failed: Divide by zero error")
        }
        other => panic!("{other:?}"),
    }
    assert!(job.retries.is_empty(), "{:?}", job.retries);
    assert!(h.launched().is_empty(), "no second attempt");
}

#[test]
fn a_task_its_worker_stops_holding_runs_again() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("lost", &[40]);
    assert_eq!(h.launched().len(), 1);
    // Held: nothing to do.
    h.heartbeat(&w, 0, 0, &[("lost", 0, 0)]);
    assert!(h.launched().is_empty());
    // Not held once: its report may be on the way.
    h.heartbeat(&w, 0, 0, &[]);
    assert!(h.launched().is_empty());
    // Not held twice: its launch or its report was lost. It runs again,
    // without counting against its attempts.
    h.heartbeat(&w, 0, 0, &[]);
    let again = h.launched();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((again[0].2, again[0].3), (0, 1), "task 0, attempt 1");
    let job = h.job_state("lost");
    assert!(
        job.retries[0].contains("no longer held it"),
        "{:?}",
        job.retries
    );
    assert_eq!(job.state, JobState::Running);
    // The late report of the lost attempt changes nothing.
    h.succeed(&w, "lost", 0, MIB);
    assert_eq!(h.job_state("lost").state, JobState::Running);
}

#[test]
fn a_task_held_for_a_job_that_is_gone_is_cancelled() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("live", &[40]);
    h.launched();
    h.heartbeat(&w, 0, 0, &[("live", 0, 0), ("ghost", 3, 0)]);
    assert_eq!(h.cancelled(), vec!["ghost".to_string()]);
}

#[test]
fn a_lost_workers_tasks_run_elsewhere_and_its_stream_is_dropped() {
    let mut h = Harness::new(false);
    let a = h.worker(1, LIMIT_FOR_1000MIB);
    h.job("j", &[10]);
    assert_eq!(h.launched()[0].0, a);
    let b = h.worker(1, LIMIT_FOR_1000MIB);
    h.handle(Event::WorkerDisconnected { worker: a.clone() });
    assert!(h
        .sent
        .iter()
        .any(|c| matches!(c, Command::Detach { worker } if *worker == a)));
    let again = h.launched();
    assert_eq!(again, vec![(b.clone(), "j".to_string(), 0, 1)]);
    assert_eq!(h.state.metrics.retries[&EndReason::WorkerLost], 1);
    // The lost attempt is in the task stream; its late report changes nothing.
    let stream: Vec<_> = h.state.metrics.stream.iter().map(|r| r.reason).collect();
    assert_eq!(stream, vec![EndReason::WorkerLost]);
    h.succeed(&a, "j", 0, MIB);
    assert_eq!(h.job_state("j").state, JobState::Running);
}

#[test]
fn watchers_get_the_state_at_once_and_the_end_ends_them() {
    let mut h = Harness::new(true);
    let w = h.worker(2, LIMIT_FOR_1000MIB);
    h.job("watched", &[10]);
    h.launched();
    h.sent.clear();
    let (events, _rx) = mpsc::channel(8);
    let (reply, mut answer) = oneshot::channel();
    h.handle(Event::WatchRequested {
        job: JobId("watched".into()),
        events,
        reply,
    });
    assert!(answer.try_recv().unwrap().is_ok());
    assert!(matches!(&h.sent[0], Command::Watch { job, .. } if job.0 == "watched"));
    assert!(matches!(
        &h.sent[1],
        Command::Publish { event, done: false, .. }
            if matches!(**event, job_event::Event::Progress(_))
    ));
    h.sent.clear();
    h.succeed(&w, "watched", 0, MIB);
    let ended: Vec<bool> = h
        .sent
        .iter()
        .filter_map(|c| match c {
            Command::Publish { event, done, .. }
                if matches!(**event, job_event::Event::Completed(_)) =>
            {
                Some(*done)
            }
            _ => None,
        })
        .collect();
    assert_eq!(ended, vec![true]);
    // A job that is not known is refused, and nothing is watched.
    let (events, _rx) = mpsc::channel(8);
    let (reply, mut answer) = oneshot::channel();
    h.sent.clear();
    h.handle(Event::WatchRequested {
        job: JobId("nope".into()),
        events,
        reply,
    });
    assert!(answer.try_recv().unwrap().is_err());
    assert!(h.sent.is_empty());
}

#[test]
fn views_show_workers_running_tasks_and_moved_counters() {
    let mut h = Harness::new(true);
    let w = h.worker(2, LIMIT_FOR_1000MIB);
    h.job("a", &[10, 10, 10]);
    assert_eq!(h.launched().len(), 2);
    let view = |h: &mut Harness, view: View| {
        let (reply, mut answer) = oneshot::channel();
        h.handle(Event::ViewRequested { view, reply });
        answer.try_recv().unwrap()
    };
    let workers: serde_json::Value =
        serde_json::from_str(&view(&mut h, View::Workers).unwrap()).unwrap();
    assert_eq!(workers[0]["id"], w.0.as_str());
    assert_eq!(workers[0]["running_tasks"], 2);
    let tasks: serde_json::Value =
        serde_json::from_str(&view(&mut h, View::Tasks { since_ms: 0 }).unwrap()).unwrap();
    let mut slots: Vec<u64> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slot"].as_u64().unwrap())
        .collect();
    slots.sort();
    assert_eq!(slots, vec![0, 1], "two running tasks on two cores");
    h.succeed(&w, "a", 0, MIB);
    let metrics = view(&mut h, View::Metrics).unwrap();
    for line in [
        "keel_workers 1",
        "keel_tasks_started_total 3",
        "keel_tasks_succeeded_total 1",
        "keel_jobs{state=\"running\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    let job: serde_json::Value =
        serde_json::from_str(&view(&mut h, View::Job(JobId("a".into()))).unwrap()).unwrap();
    assert_eq!(job["tasks_done"], 1);
    assert_eq!(job["tasks_total"], 3);
    assert_eq!(job["profile"]["stages"][0]["tasks"][0]["task"], 0);
    assert!(view(&mut h, View::Job(JobId("b".into()))).is_none());
}

#[test]
fn a_task_whose_reports_never_arrive_fails_its_job_in_the_end() {
    let mut h = Harness::new(true);
    let w = h.worker(4, LIMIT_FOR_1000MIB);
    h.job("mute", &[40]);
    for _ in 0..40 {
        h.launched();
        h.heartbeat(&w, 0, 0, &[]);
    }
    match &h.job_state("mute").state {
        JobState::Failed(m) => assert!(m.contains("was stopped 10 times"), "{m}"),
        other => panic!("{other:?}"),
    }
}
