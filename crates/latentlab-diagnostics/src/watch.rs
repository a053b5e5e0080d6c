//! An early warning of posterior collapse during training.

use latentlab_model::Event;

/// Watches a run's KL and warns, once, when it falls towards collapse: when
/// the moving average of the per-image KL over recent steps drops below
/// `min_kl` nats after `warmup` steps, or when an epoch ends with fewer than
/// `min_active` of the test set's dimensions active.
#[derive(Clone, Debug)]
pub struct CollapseWatch {
    /// The KL (nats per image) under which to warn.
    pub min_kl: f64,
    /// The smallest acceptable share of active dimensions.
    pub min_active: f64,
    /// Steps before the KL is judged (the encoder needs a moment).
    pub warmup: u64,
    ema: Option<f64>,
    warned: bool,
}

impl Default for CollapseWatch {
    fn default() -> Self {
        Self::new(1.0)
    }
}

impl CollapseWatch {
    /// A watch warning below `min_kl` nats.
    pub fn new(min_kl: f64) -> Self {
        Self {
            min_kl,
            min_active: 0.1,
            warmup: 100,
            ema: None,
            warned: false,
        }
    }

    /// The smoothed KL so far.
    pub fn kl(&self) -> Option<f64> {
        self.ema
    }

    /// Feeds an event; returns a warning the first time collapse looms.
    pub fn observe(&mut self, e: &Event<'_>) -> Option<String> {
        if self.warned {
            return None;
        }
        let msg = match e {
            Event::Step { step, kl, .. } => {
                let ema = match self.ema {
                    None => *kl,
                    Some(m) => 0.98 * m + 0.02 * kl,
                };
                self.ema = Some(ema);
                (*step > self.warmup && ema < self.min_kl).then(|| {
                    format!(
                        "step {step}: the KL has fallen to {ema:.3} nats per image (below {}); the posterior is collapsing onto the prior. Consider KL warm-up (--kl-schedule linear:N), free bits (--free-bits) or a smaller --beta",
                        self.min_kl
                    )
                })
            }
            Event::Epoch(r) => {
                let total = r.test.kl_per_dim.len().max(1);
                let share = r.test.active_units as f64 / total as f64;
                (share < self.min_active).then(|| {
                    format!(
                        "epoch {}: only {} of {total} dimensions are active on the test set; the posterior is collapsing onto the prior. Consider KL warm-up, free bits or a smaller --beta",
                        r.epoch, r.test.active_units
                    )
                })
            }
        };
        self.warned = msg.is_some();
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, kl: f64) -> Event<'static> {
        Event::Step {
            step,
            total: 1000,
            epoch: 1,
            loss: 100.0,
            kl,
        }
    }

    #[test]
    fn warns_once_when_the_kl_sinks_and_not_before_the_warmup() {
        let mut w = CollapseWatch::new(1.0);
        // Low KL during the warm-up is not judged.
        for s in 1..=100 {
            assert!(w.observe(&step(s, 0.1)).is_none());
        }
        // A healthy KL pulls the average up; no warning.
        let mut h = CollapseWatch::new(1.0);
        for s in 1..=500 {
            assert!(h.observe(&step(s, 20.0)).is_none());
        }
        // A falling KL: the warning comes once, naming the step and figure.
        let mut got = Vec::new();
        for s in 501..=1000 {
            if let Some(m) = h.observe(&step(s, 0.01)) {
                got.push((s, m));
            }
        }
        assert_eq!(got.len(), 1, "{got:?}");
        let (s, m) = &got[0];
        assert!(*s > 600 && *s < 800, "warned at step {s}");
        assert!(
            m.contains(&format!("step {s}")) && m.contains("nats"),
            "{m}"
        );
        assert!(h.kl().unwrap() < 1.0);
    }
}
