//! Our ManyChat endpoints and how they map to engine flows, both ways: a request to an endpoint
//! runs a flow, and a flow the engine points at (a choice, a paused question) becomes the
//! endpoint URL that ManyChat calls back.

use std::collections::BTreeMap;

/// Engine variable names shared with the lead's flows.
pub const EMAIL: &str = "email";
pub const ORDER_NUMBER: &str = "order_number";
pub const REWARD_ID: &str = "reward_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Join,
    Claim,
    Balance,
    /// Lists rewards: the `redeem` flow without a reward picked.
    Rewards,
    /// Redeems the reward in `reward_id`.
    Redeem,
    Help,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Join,
        Endpoint::Claim,
        Endpoint::Balance,
        Endpoint::Rewards,
        Endpoint::Redeem,
        Endpoint::Help,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Join => "/manychat/join",
            Endpoint::Claim => "/manychat/claim",
            Endpoint::Balance => "/manychat/balance",
            Endpoint::Rewards => "/manychat/rewards",
            Endpoint::Redeem => "/manychat/redeem",
            Endpoint::Help => "/manychat/help",
        }
    }

    /// The engine flow this endpoint runs.
    pub fn flow(self) -> &'static str {
        match self {
            Endpoint::Join => "join",
            Endpoint::Claim => "claim",
            Endpoint::Balance => "balance",
            Endpoint::Rewards | Endpoint::Redeem => "redeem",
            Endpoint::Help => "help",
        }
    }

    /// The step fields this endpoint reads from ManyChat's contact data. Only these are taken,
    /// because `custom_fields` keep values from earlier steps (a stale `order_number_input`
    /// must not leak into a redeem).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Endpoint::Join => &[EMAIL],
            // A non-member's claim joins first, so the email is welcome here too.
            Endpoint::Claim => &[ORDER_NUMBER, EMAIL],
            Endpoint::Redeem => &[REWARD_ID],
            Endpoint::Balance | Endpoint::Rewards | Endpoint::Help => &[],
        }
    }

    /// Vars this endpoint never passes on: `/rewards` lists, so a reward id must not pick one.
    pub fn excluded(self) -> &'static [&'static str] {
        match self {
            Endpoint::Rewards => &[REWARD_ID],
            _ => &[],
        }
    }

    /// The endpoint that continues `flow` with `vars`; `None` for a flow we have no URL for.
    /// The aliases cover flow files named after the style guide (`claim_order`, `redeem_reward`).
    pub fn for_flow(flow: &str, vars: &BTreeMap<String, String>) -> Option<Endpoint> {
        Some(match flow {
            "join" => Endpoint::Join,
            "claim" | "claim_order" => Endpoint::Claim,
            "balance" => Endpoint::Balance,
            "redeem" | "redeem_reward" if vars.contains_key(REWARD_ID) => Endpoint::Redeem,
            "redeem" | "redeem_reward" | "rewards" => Endpoint::Rewards,
            "help" => Endpoint::Help,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_reached_again_from_its_own_flow() {
        for e in Endpoint::ALL {
            let mut vars = BTreeMap::new();
            if e == Endpoint::Redeem {
                vars.insert(REWARD_ID.to_owned(), "free-mug".to_owned());
            }
            assert_eq!(Endpoint::for_flow(e.flow(), &vars), Some(e), "{e:?}");
        }
        assert_eq!(Endpoint::for_flow("nonsense", &BTreeMap::new()), None);
    }
}
