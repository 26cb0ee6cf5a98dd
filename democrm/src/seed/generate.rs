//! Row generators: one line of text COPY format per row, from a ChaCha stream seeded per table.
//! Emails are `@example.com`, phones `+1555...`, domains `*.example.com`: clearly fake.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Scale;

/// 2026-11-01T00:00:00Z: the seed's "now"; all generated times lie before it.
pub const ANCHOR_UNIX: i64 = 1_793_491_200;
const DAY: i64 = 86_400;

const FIRST: [&str; 40] = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Aiko",
    "Ashley",
    "Wei",
    "Kimberly",
    "Omar",
    "Emily",
    "Ivan",
    "Donna",
    "Ravi",
    "Michelle",
    "Lars",
    "Amara",
];
const LAST: [&str; 40] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
];
const ADJ: [&str; 16] = [
    "Blue", "Bright", "North", "Rapid", "Silver", "Summit", "Urban", "Vivid", "Golden", "Prime",
    "Quiet", "Red", "Solid", "True", "Wild", "Clear",
];
const NOUN: [&str; 16] = [
    "River", "Harbor", "Peak", "Forge", "Grove", "Signal", "Bridge", "Field", "Stone", "Cloud",
    "Pine", "Orbit", "Lantern", "Falcon", "Meadow", "Anchor",
];
const SUFFIX: [&str; 6] = ["Inc", "LLC", "Labs", "Group", "Systems", "Partners"];
const INDUSTRY: [&str; 8] = [
    "software",
    "retail",
    "healthcare",
    "finance",
    "manufacturing",
    "education",
    "logistics",
    "media",
];
const COUNTRY: [&str; 6] = ["US", "CA", "GB", "DE", "FR", "AU"];
const TITLE: [&str; 8] = [
    "CEO",
    "CTO",
    "VP Sales",
    "Office Manager",
    "Engineer",
    "Buyer",
    "Marketing Lead",
    "Analyst",
];
const CITY: [&str; 10] = [
    "Springfield",
    "Riverton",
    "Lakeside",
    "Fairview",
    "Georgetown",
    "Ashland",
    "Clinton",
    "Madison",
    "Franklin",
    "Salem",
];
const STAGES: [&str; 5] = ["qualification", "proposal", "negotiation", "won", "lost"];
const OWNERS: [&str; 6] = ["alex", "sam", "jordan", "taylor", "morgan", "casey"];
const PRODUCTS: [&str; 5] = [
    "Platform",
    "Support plan",
    "Onboarding",
    "Add-on seats",
    "Renewal",
];
const KINDS: [&str; 5] = ["call", "email", "meeting", "note", "task"];
const SUBJECTS: [&str; 8] = [
    "Intro call",
    "Follow-up",
    "Pricing question",
    "Demo",
    "Contract review",
    "Check-in",
    "Renewal discussion",
    "Support escalation",
];
const WORDS: [&str; 24] = [
    "customer",
    "asked",
    "about",
    "pricing",
    "the",
    "team",
    "will",
    "send",
    "proposal",
    "next",
    "week",
    "budget",
    "approved",
    "needs",
    "integration",
    "with",
    "billing",
    "call",
    "back",
    "later",
    "interested",
    "in",
    "annual",
    "plan",
];
const TRIGGERS: [&str; 4] = [
    "deal.won",
    "contact.created",
    "invoice.due",
    "appointment.reminder",
];
/// Automation actions, cycled by id: id 1 email, 2 sms, 3 charge, 4 email, ...
pub const ACTIONS: [&str; 3] = ["send_email", "send_sms", "charge_card"];
/// Contact status (the campaign segment) by weight out of 100.
const STATUSES: [(&str, u32); 4] = [
    ("lead", 40),
    ("prospect", 25),
    ("customer", 30),
    ("churned", 5),
];
const DECLINES: [&str; 3] = ["insufficient_funds", "generic_decline", "do_not_honor"];

/// The COPY column list and row count of `table`.
pub fn columns(table: &str, s: &Scale) -> (&'static str, u64) {
    match table {
        "companies" => (
            "id, name, domain, industry, employees, country, created_at",
            s.companies,
        ),
        "contacts" => (
            "id, company_id, first_name, last_name, email, phone, title, city, status, lead_score, created_at, updated_at",
            s.contacts,
        ),
        "deals" => (
            "id, company_id, contact_id, name, stage, amount_cents, probability, owner_name, created_at, closed_at",
            s.deals,
        ),
        "activities" => (
            "id, contact_id, deal_id, kind, subject, notes, occurred_at",
            s.activities,
        ),
        "campaigns" => (
            "id, name, subject, segment, from_email, status, created_at",
            s.campaigns,
        ),
        "automations" => (
            "id, name, trigger_event, action, template, amount_cents, enabled, created_at",
            s.automations,
        ),
        "messages" => (
            "id, contact_id, campaign_id, automation_id, channel, provider, provider_message_id, status, error_code, created_at, updated_at",
            s.messages,
        ),
        _ => (
            "id, contact_id, automation_id, provider_payment_id, amount_cents, currency, status, decline_code, created_at, updated_at",
            s.payments,
        ),
    }
}

/// The sender address of campaign mail (sender-scoped blocking targets this domain).
pub const CAMPAIGN_FROM: &str = "news@campaigns.example.com";
/// The sender address of automation mail.
pub const AUTOMATION_FROM: &str = "notify@app.example.com";

/// A deterministic row stream for one table.
pub struct Rows {
    table: &'static str,
    scale: Scale,
    rng: ChaCha8Rng,
}

fn ts(buf: &mut String, unix: i64) {
    let t = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
    let _ = write!(buf, "{}", t.format("%Y-%m-%d %H:%M:%S+00"));
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

fn hex_id(rng: &mut ChaCha8Rng, len: usize) -> String {
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let _ = write!(s, "{:016x}", rng.random::<u64>());
    }
    s.truncate(len);
    s
}

impl Rows {
    pub fn new(table: &'static str, scale: Scale) -> Rows {
        let salt = super::TABLES.iter().position(|t| *t == table).unwrap_or(0) as u64;
        Rows {
            table,
            scale,
            rng: ChaCha8Rng::seed_from_u64(scale.seed ^ (salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
        }
    }

    fn past(&mut self, max_days: i64) -> i64 {
        ANCHOR_UNIX - self.rng.random_range(0..max_days * DAY)
    }

    fn id_in(&mut self, n: u64) -> u64 {
        self.rng.random_range(1..=n.max(1))
    }

    /// Appends row `i` (1-based, also its id) to `buf`.
    pub fn row(&mut self, i: u64, buf: &mut String) {
        match self.table {
            "companies" => self.company(i, buf),
            "contacts" => self.contact(i, buf),
            "deals" => self.deal(i, buf),
            "activities" => self.activity(i, buf),
            "campaigns" => self.campaign(i, buf),
            "automations" => self.automation(i, buf),
            "messages" => self.message(i, buf),
            _ => self.payment(i, buf),
        }
        buf.push('\n');
    }

    fn company(&mut self, i: u64, buf: &mut String) {
        let r = &mut self.rng;
        let (adj, noun, suffix) = (pick(r, &ADJ), pick(r, &NOUN), pick(r, &SUFFIX));
        let employees = r.random_range(5..5000);
        let (industry, country) = (pick(r, &INDUSTRY), pick(r, &COUNTRY));
        let _ = write!(
            buf,
            "{i}\t{adj} {noun} {suffix}\t{}{}-{i}.example.com\t{industry}\t{employees}\t{country}\t",
            adj.to_lowercase(),
            noun.to_lowercase()
        );
        let t = self.past(3 * 365);
        ts(buf, t);
    }

    fn contact(&mut self, i: u64, buf: &mut String) {
        let company = self.id_in(self.scale.companies);
        let r = &mut self.rng;
        let (first, last) = (pick(r, &FIRST), pick(r, &LAST));
        let (title, city) = (pick(r, &TITLE), pick(r, &CITY));
        let mut roll = r.random_range(0..100u32);
        let mut status = STATUSES[0].0;
        for (s, w) in STATUSES {
            if roll < w {
                status = s;
                break;
            }
            roll -= w;
        }
        let score = r.random_range(0..100u32);
        let _ = write!(
            buf,
            "{i}\t{company}\t{first}\t{last}\t{}.{}{i}@example.com\t+1555{:07}\t{title}\t{city}\t{status}\t{score}\t",
            first.to_lowercase(),
            last.to_lowercase(),
            i % 10_000_000
        );
        let created = self.past(2 * 365);
        ts(buf, created);
        buf.push('\t');
        let updated = (created + self.rng.random_range(0..90 * DAY)).min(ANCHOR_UNIX);
        ts(buf, updated);
    }

    fn deal(&mut self, i: u64, buf: &mut String) {
        let company = self.id_in(self.scale.companies);
        let contact = self.id_in(self.scale.contacts);
        let r = &mut self.rng;
        let stage_i = r.random_range(0..STAGES.len());
        let stage = STAGES[stage_i];
        let probability = [10, 30, 60, 100, 0][stage_i];
        let amount = r.random_range(1_000u64..500_000) * 100;
        let (product, owner) = (pick(r, &PRODUCTS), pick(r, &OWNERS));
        let _ = write!(
            buf,
            "{i}\t{company}\t{contact}\tDeal {i}: {product}\t{stage}\t{amount}\t{probability}\t{owner}\t"
        );
        let created = self.past(365);
        ts(buf, created);
        buf.push('\t');
        if stage == "won" || stage == "lost" {
            let closed = (created + self.rng.random_range(DAY..60 * DAY)).min(ANCHOR_UNIX);
            ts(buf, closed);
        } else {
            buf.push_str("\\N");
        }
    }

    fn activity(&mut self, i: u64, buf: &mut String) {
        let contact = self.id_in(self.scale.contacts);
        let deal = if self.rng.random_range(0..10) < 3 {
            self.id_in(self.scale.deals).to_string()
        } else {
            "\\N".to_string()
        };
        let r = &mut self.rng;
        let (kind, subject) = (pick(r, &KINDS), pick(r, &SUBJECTS));
        let _ = write!(buf, "{i}\t{contact}\t{deal}\t{kind}\t{subject}\t");
        let n = r.random_range(6..14);
        for w in 0..n {
            if w > 0 {
                buf.push(' ');
            }
            buf.push_str(pick(r, &WORDS));
        }
        buf.push('\t');
        let t = self.past(365);
        ts(buf, t);
    }

    fn campaign(&mut self, i: u64, buf: &mut String) {
        let segment = STATUSES[(i as usize - 1) % STATUSES.len()].0;
        let theme = pick(
            &mut self.rng,
            &[
                "Spring sale",
                "Product update",
                "Webinar",
                "Newsletter",
                "Renewal reminder",
            ],
        );
        let _ = write!(
            buf,
            "{i}\tCampaign {i}: {theme}\t{theme} from Vigil Demo CRM\t{segment}\t{CAMPAIGN_FROM}\tdraft\t"
        );
        let t = self.past(60);
        ts(buf, t);
    }

    fn automation(&mut self, i: u64, buf: &mut String) {
        let action = ACTIONS[(i as usize - 1) % ACTIONS.len()];
        let trigger = pick(&mut self.rng, &TRIGGERS);
        let amount = if action == "charge_card" {
            (self.rng.random_range(19u64..200) * 100).to_string()
        } else {
            "\\N".to_string()
        };
        let _ = write!(
            buf,
            "{i}\tAutomation {i}: {action} on {trigger}\t{trigger}\t{action}\tHello from the demo CRM ({trigger})\t{amount}\tt\t"
        );
        let t = self.past(180);
        ts(buf, t);
    }

    fn message(&mut self, i: u64, buf: &mut String) {
        let contact = self.id_in(self.scale.contacts);
        let sms = self.rng.random_range(0..10) < 3;
        let r = &mut self.rng;
        let (campaign, automation) = if !sms && r.random_range(0..10) < 6 {
            (
                r.random_range(1..=self.scale.campaigns.max(1)).to_string(),
                "\\N".to_string(),
            )
        } else {
            // email automations have ids 1, 4, 7, ...; sms ones 2, 5, 8, ...
            let groups = self.scale.automations.max(3) / 3;
            let g = r.random_range(0..groups.max(1));
            (
                ("\\N").to_string(),
                (g * 3 + if sms { 2 } else { 1 }).to_string(),
            )
        };
        let roll = r.random_range(0..1000u32);
        let (channel, provider, pid, status, code) = if sms {
            let (status, code) = match roll {
                0..=19 => ("undelivered", "30003"),
                20..=24 => ("failed", "30005"),
                _ => ("delivered", "\\N"),
            };
            (
                "sms",
                "twilio",
                format!("SM{}", hex_id(r, 32)),
                status,
                code,
            )
        } else {
            let (status, code) = match roll {
                0..=9 => ("bounced", "5.1.1"),
                10..=14 => ("dropped", "\\N"),
                15..=24 => ("deferred", "\\N"),
                _ => ("delivered", "\\N"),
            };
            ("email", "sendgrid", hex_id(r, 22), status, code)
        };
        let _ = write!(
            buf,
            "{i}\t{contact}\t{campaign}\t{automation}\t{channel}\t{provider}\t{pid}\t{status}\t{code}\t"
        );
        let t = self.past(90);
        ts(buf, t);
        buf.push('\t');
        ts(buf, t + 30);
    }

    fn payment(&mut self, i: u64, buf: &mut String) {
        let contact = self.id_in(self.scale.contacts);
        let r = &mut self.rng;
        let groups = self.scale.automations.max(3) / 3;
        let automation = r.random_range(0..groups.max(1)) * 3 + 3;
        let amount = r.random_range(19u64..200) * 100;
        let (status, decline) = if r.random_range(0..100) < 4 {
            ("failed", pick(r, &DECLINES))
        } else {
            ("succeeded", "\\N")
        };
        let pid = format!("pi_{}", hex_id(r, 24));
        let _ = write!(
            buf,
            "{i}\t{contact}\t{automation}\t{pid}\t{amount}\tusd\t{status}\t{decline}\t"
        );
        let t = self.past(180);
        ts(buf, t);
        buf.push('\t');
        ts(buf, t + 5);
    }
}
