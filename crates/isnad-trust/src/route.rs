//! Routing through the central authorities (spec/relay.md §2): which path
//! a message must take under policy, and whether a relayed message follows
//! the path its ends are entitled to.

use isnad_envelope::{AgencyId, Kind};

use crate::directory::Role;
use crate::{Decision, TrustStore};

/// The central-authority route from `sender` to `recipient`: the sender,
/// then the central authority of the sender's country, then that of the
/// recipient's country, then the recipient, leaving out an authority that
/// is already an end or already on the route. `ca_of` names a country's
/// central authority. A route of two agencies is direct delivery.
pub fn canonical_route(
    sender: &AgencyId,
    recipient: &AgencyId,
    ca_of: impl Fn(&str) -> Option<AgencyId>,
) -> Result<Vec<AgencyId>, String> {
    let mut route = vec![sender.clone()];
    for country in [sender.country(), recipient.country()] {
        let ca = ca_of(country)
            .ok_or_else(|| format!("no central authority is listed for {country}"))?;
        if &ca != recipient && !route.contains(&ca) {
            route.push(ca);
        }
    }
    route.push(recipient.clone());
    Ok(route)
}

impl TrustStore {
    /// The central authority of `country`: the first agency of role
    /// `central-authority` in its current directory.
    pub fn central_authority(&self, country: &str, now: u64) -> Option<AgencyId> {
        self.current(country, now)?
            .agencies
            .iter()
            .find(|a| a.role == Role::CentralAuthority)
            .map(|a| a.id.clone())
    }

    /// The canonical central-authority route between two agencies at `now`.
    pub fn canonical_route(
        &self,
        sender: &AgencyId,
        recipient: &AgencyId,
        now: u64,
    ) -> Result<Vec<AgencyId>, String> {
        canonical_route(sender, recipient, |c| self.central_authority(c, now))
    }

    /// The policy decision for a message delivered directly from `sender`
    /// to `recipient`: it counts as sent via the central authorities
    /// (`via_ca`) exactly when the canonical route is itself direct, e.g.
    /// between the two central authorities.
    pub fn evaluate_direct(
        &self,
        sender: &AgencyId,
        recipient: &AgencyId,
        kind: Kind,
        now: u64,
    ) -> Decision {
        let via_ca = self
            .canonical_route(sender, recipient, now)
            .is_ok_and(|r| r.len() == 2);
        self.evaluate(sender, recipient, kind, via_ca, now)
    }

    /// The route a message must take: `[sender, recipient]` when policy
    /// allows direct delivery, else the canonical route when policy allows
    /// the pair via the central authorities, else the denial.
    pub fn route(
        &self,
        sender: &AgencyId,
        recipient: &AgencyId,
        kind: Kind,
        now: u64,
    ) -> Result<Vec<AgencyId>, String> {
        let denied = match self.evaluate_direct(sender, recipient, kind, now) {
            Decision::Allowed { .. } => return Ok(vec![sender.clone(), recipient.clone()]),
            Decision::Denied(why) => why,
        };
        let route = self
            .canonical_route(sender, recipient, now)
            .map_err(|e| format!("{denied}, and it cannot be relayed: {e}"))?;
        if route.len() == 2 {
            return Err(denied);
        }
        match self.evaluate(sender, recipient, kind, true, now) {
            Decision::Allowed { .. } => Ok(route),
            Decision::Denied(why) => Err(why),
        }
    }

    /// Whether a relayed message may take `route` (spec/relay.md §6 step
    /// 6): it is the canonical route between its ends, and policy allows the
    /// ends to exchange `kind` via the central authorities. An end-to-end
    /// receipt (`kind` receipt) answers a message already allowed, so only
    /// the route is checked for it.
    pub fn check_relayed(&self, route: &[AgencyId], kind: Kind, now: u64) -> Result<(), String> {
        let (Some(first), Some(last)) = (route.first(), route.last()) else {
            return Err("empty route".into());
        };
        let canonical = self.canonical_route(first, last, now)?;
        if canonical != route {
            return Err(format!(
                "the route {} is not the central-authority route {}",
                join(route),
                join(&canonical)
            ));
        }
        if kind == Kind::Receipt {
            return Ok(());
        }
        match self.evaluate(first, last, kind, true, now) {
            Decision::Allowed { .. } => Ok(()),
            Decision::Denied(why) => Err(why),
        }
    }
}

fn join(route: &[AgencyId]) -> String {
    route
        .iter()
        .map(AgencyId::as_str)
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AgencyId {
        AgencyId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ca(c: &str) -> Option<AgencyId> {
        match c {
            "iq" => Some(id("iq.moj.ca")),
            "fr" => Some(id("fr.mj.bepi")),
            _ => None,
        }
    }

    #[test]
    fn canonical_routes() {
        let r = |s: &str, t: &str| canonical_route(&id(s), &id(t), ca).map(|v| join(&v));
        assert_eq!(
            r("iq.moi.ahtd", "fr.pn.ocrtis").as_deref(),
            Ok("iq.moi.ahtd → iq.moj.ca → fr.mj.bepi → fr.pn.ocrtis")
        );
        assert_eq!(
            r("fr.pn.ocrtis", "iq.moi.ahtd").as_deref(),
            Ok("fr.pn.ocrtis → fr.mj.bepi → iq.moj.ca → iq.moi.ahtd")
        );
        assert_eq!(
            r("iq.moj.ca", "fr.pn.ocrtis").as_deref(),
            Ok("iq.moj.ca → fr.mj.bepi → fr.pn.ocrtis")
        );
        assert_eq!(
            r("iq.moi.ahtd", "fr.mj.bepi").as_deref(),
            Ok("iq.moi.ahtd → iq.moj.ca → fr.mj.bepi")
        );
        assert_eq!(
            r("iq.moj.ca", "fr.mj.bepi").as_deref(),
            Ok("iq.moj.ca → fr.mj.bepi")
        );
        assert_eq!(
            r("iq.moi.ahtd", "iq.moi.x").as_deref(),
            Ok("iq.moi.ahtd → iq.moj.ca → iq.moi.x")
        );
        assert_eq!(
            r("iq.moi.ahtd", "iq.moj.ca").as_deref(),
            Ok("iq.moi.ahtd → iq.moj.ca")
        );
        assert!(r("iq.moi.ahtd", "de.bka.x").is_err());
    }
}
