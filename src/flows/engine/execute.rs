//! Executing steps: runs a flow from a position until a step waits for the customer or the
//! flow (and the flows it was called from) ends.

use super::{normalize, Answer, Engine, Position, CONFIRMED};
use crate::flows::actions::{self, Ctx};
use crate::flows::definition::Step;
use crate::flows::turn::{payloads, Choice};
use crate::program::ProgramError;

impl Engine {
    pub(super) async fn execute(
        &self,
        ctx: &mut Ctx<'_>,
        mut pos: Position,
        mut answer: Option<Answer>,
    ) -> Result<Option<Position>, ProgramError> {
        // Bounded so a flow file with a cycle through require_member cannot spin forever.
        for _ in 0..64 {
            let Some(flow) = self.registry.flows.get(&pos.flow) else {
                return Ok(None);
            };
            let Some((_, step)) = flow.steps.get(pos.step) else {
                match pos.stack.pop() {
                    Some((f, s)) => {
                        pos.flow = f;
                        pos.step = s;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            match step {
                Step::Say { say } => {
                    ctx.say(say);
                    pos.step += 1;
                }
                Step::SkipIfMember { say } => {
                    if ctx.is_member() {
                        ctx.say(say);
                        return Ok(None);
                    }
                    pos.step += 1;
                }
                Step::RequireMember { flow: join } => {
                    if ctx.is_member() {
                        pos.step += 1;
                    } else {
                        pos.stack.push((pos.flow.clone(), pos.step + 1));
                        pos.flow = join.clone();
                        pos.step = 0;
                    }
                }
                Step::Confirm {
                    ask,
                    yes,
                    no,
                    on_no,
                } => {
                    if ctx.stateless || pos.vars.get(CONFIRMED).is_some_and(|v| v == "yes") {
                        pos.step += 1;
                        continue;
                    }
                    let verdict = match answer.take() {
                        Some(Answer::Payload(p)) => Some(p == yes.payload),
                        Some(Answer::Text(t)) => actions::yes_no(&normalize(&t), &ctx.locale),
                        None => None,
                    };
                    match verdict {
                        Some(true) => pos.step += 1,
                        Some(false) => {
                            ctx.say(on_no);
                            return Ok(None);
                        }
                        None => {
                            let choices = [yes, no]
                                .iter()
                                .map(|c| Choice {
                                    title: ctx.text(&c.title),
                                    payload: c.payload.clone(),
                                })
                                .collect();
                            ctx.ask(ask, choices);
                            return Ok(Some(pos));
                        }
                    }
                }
                Step::Ask {
                    input,
                    var,
                    ask,
                    invalid,
                } => {
                    let given = pos.vars.remove(var).or_else(|| match answer.take() {
                        Some(Answer::Text(t) | Answer::Payload(t)) => Some(t),
                        None => None,
                    });
                    match given {
                        None => {
                            ctx.ask(ask, vec![]);
                            return Ok(Some(pos));
                        }
                        Some(raw) => match actions::parse_input(*input, &raw) {
                            Some(value) => {
                                pos.vars.insert(var.clone(), value);
                                pos.step += 1;
                            }
                            None => {
                                ctx.ask(invalid, vec![]);
                                return Ok(Some(pos));
                            }
                        },
                    }
                }
                Step::ChooseReward { ask, var } => {
                    let picked = pos.vars.get(var).cloned().or_else(|| match answer.take() {
                        Some(Answer::Payload(p)) => {
                            p.strip_prefix(payloads::REDEEM_PREFIX).map(str::to_owned)
                        }
                        Some(Answer::Text(t)) => {
                            actions::reward_by_text(self.program.catalogue(), &normalize(&t))
                                .map(|r| r.id.clone())
                        }
                        None => None,
                    });
                    match picked {
                        Some(id) => {
                            pos.vars.insert(var.clone(), id);
                            pos.step += 1;
                        }
                        None => {
                            let choices = ctx.renderer().reward_choices();
                            ctx.ask(ask, choices);
                            return Ok(Some(pos));
                        }
                    }
                }
                Step::VerifyCode { var, outcomes } => {
                    if ctx.is_member() {
                        pos.step += 1;
                        continue;
                    }
                    let typed = pos.vars.remove(var).or_else(|| match answer.take() {
                        Some(Answer::Text(t) | Answer::Payload(t)) => Some(t),
                        None => None,
                    });
                    // Arriving here, the join's own message said where the code went.
                    let Some(typed) = typed else {
                        return Ok(Some(pos));
                    };
                    match ctx.verify(&typed, outcomes).await? {
                        actions::Verified::Member => pos.step += 1,
                        actions::Verified::Again => return Ok(Some(pos)),
                        actions::Verified::End => return Ok(None),
                    }
                }
                Step::Action { action, outcomes } => {
                    let go_on = ctx.act(*action, outcomes, &pos.vars).await?;
                    if !go_on {
                        return Ok(None);
                    }
                    pos.step += 1;
                }
            }
        }
        tracing::error!(flow = %pos.flow, "flow did not finish within 64 steps; check require_member cycles");
        Ok(None)
    }
}
