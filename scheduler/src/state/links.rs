//! The thin layer between the core and the world: it holds the workers'
//! command streams and the jobs' watchers, performs the core's commands,
//! and runs the event loop.

use std::collections::HashMap;

use keel_proto::ids::{JobId, WorkerId};
use keel_proto::pb::{JobEvent, WorkerCommand};
use tokio::sync::mpsc;

use super::event::{Command, Event, JobEvents, WorkerStream};
use super::SchedulerState;

#[derive(Default)]
pub struct Links {
    workers: HashMap<WorkerId, WorkerStream>,
    watchers: HashMap<JobId, Vec<JobEvents>>,
}

impl Links {
    /// Performs `commands` in order; returns the workers whose command
    /// stream turned out to be closed (the core loses them).
    pub fn perform(&mut self, commands: Vec<Command>) -> Vec<WorkerId> {
        let mut closed = vec![];
        for command in commands {
            match command {
                Command::Attach { worker, stream } => {
                    self.workers.insert(worker, stream);
                }
                Command::Detach { worker } => {
                    self.workers.remove(&worker);
                }
                Command::ToWorker { worker, command } => {
                    let sent = self.workers.get(&worker).is_some_and(|s| {
                        s.try_send(WorkerCommand {
                            command: Some(command),
                        })
                        .is_ok()
                    });
                    if !sent && !closed.contains(&worker) {
                        closed.push(worker);
                    }
                }
                Command::Watch { job, watcher } => {
                    self.watchers.entry(job).or_default().push(watcher);
                }
                Command::Publish { job, event, done } => {
                    let Some(watchers) = self.watchers.get_mut(&job) else {
                        continue;
                    };
                    // A watcher whose buffer is full misses a progress
                    // update, not the end; a job that is over ends them all.
                    watchers.retain(|w| {
                        let event = JobEvent {
                            event: Some((*event).clone()),
                        };
                        w.try_send(Ok(event)).is_ok() || !done
                    });
                    if done {
                        self.watchers.remove(&job);
                    }
                }
            }
        }
        closed
    }
}

pub async fn run_event_loop(mut state: SchedulerState, mut events: mpsc::Receiver<Event>) {
    let mut links = Links::default();
    while let Some(e) = events.recv().await {
        let mut commands = state.handle(e);
        loop {
            let closed = links.perform(commands);
            if closed.is_empty() {
                break;
            }
            commands = closed
                .into_iter()
                .flat_map(|worker| state.handle(Event::WorkerDisconnected { worker }))
                .collect();
        }
    }
}
