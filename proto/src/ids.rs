//! Identifiers are types, so a stage number is never mistaken for a task number.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StageId(pub u32);

/// One task of a stage: its index within the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    pub stage: StageId,
    pub index: u32,
}

/// One attempt at running a task (a retried task's attempts count up from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AttemptId {
    pub task: TaskId,
    pub attempt: u32,
}

impl TaskId {
    pub fn new(stage: u32, index: u32) -> TaskId {
        TaskId {
            stage: StageId(stage),
            index,
        }
    }

    pub fn attempt(self, attempt: u32) -> AttemptId {
        AttemptId {
            task: self,
            attempt,
        }
    }
}

impl AttemptId {
    pub fn new(stage: u32, index: u32, attempt: u32) -> AttemptId {
        TaskId::new(stage, index).attempt(attempt)
    }

    pub fn stage(self) -> StageId {
        self.task.stage
    }

    pub fn index(self) -> u32 {
        self.task.index
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage {}", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage {} task {}", self.stage.0, self.index)
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} attempt {}", self.task, self.attempt)
    }
}

impl crate::pb::TaskStatus {
    /// The attempt this report is about.
    pub fn attempt_id(&self) -> AttemptId {
        AttemptId::new(self.stage_id, self.task, self.attempt)
    }
}

impl crate::pb::RunningTask {
    /// The attempt a worker says it holds.
    pub fn attempt_id(&self) -> AttemptId {
        AttemptId::new(self.stage_id, self.task, self.attempt)
    }
}
