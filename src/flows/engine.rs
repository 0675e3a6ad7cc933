//! Runs flows: picks the flow an input starts or continues, executes steps until one waits for
//! the customer, and renders the replies.

use super::turn::{Input, Turn};
use crate::domain::{ChatIdentity, Profile};
use crate::program::{Program, ProgramError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Engine {
    program: Arc<Program>,
}

impl Engine {
    pub fn new(program: Arc<Program>) -> Self {
        Engine { program }
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Stateful conversation (Messenger, terminal): the paused position is kept in the store.
    pub async fn converse(&self, input: Input) -> Result<Turn, ProgramError> {
        let _ = input;
        Ok(Turn::default())
    }

    /// Stateless run of one flow (ManyChat): `vars` carry what earlier calls collected.
    pub async fn run(
        &self,
        flow: &str,
        who: &ChatIdentity,
        profile: &Profile,
        vars: BTreeMap<String, String>,
    ) -> Result<Turn, ProgramError> {
        let _ = (flow, who, profile, vars);
        Ok(Turn::default())
    }

    /// The flow and values a payload starts, e.g. `REDEEM:free-mug` → (`redeem`, reward=free-mug).
    pub fn route_payload(&self, payload: &str) -> Option<(String, BTreeMap<String, String>)> {
        let _ = payload;
        None
    }
}
