//! Message bodies: the typed CBOR maps carried inside an envelope
//! (spec/messages.cddl), without the header claims or the envelope around
//! them (isnad-envelope).
//!
//! Bodies are CBOR maps with text keys in kebab-case. The rule for unknown
//! keys (spec/protocol.md §6): a key beginning with `x-` is an extension,
//! preserved verbatim in [`Extensions`] and never interpreted; any other
//! unknown key makes the message malformed.

use std::collections::BTreeMap;

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use isnad_attach::AttachmentDescriptor;

use crate::{AgencyId, Digest, ErrorCode, MessageId};

/// Extension fields (`x-…` keys) of a body, preserved verbatim.
pub type Extensions = BTreeMap<String, Value>;

// ---------------------------------------------------------------------------
// mla-request (UN Model Treaty on Mutual Assistance in Criminal Matters, art. 5)

/// A mutual legal assistance request (UN Model Treaty art. 5 contents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MlaRequest {
    /// The requesting side's own reference for this request.
    pub reference: String,
    /// Name of the authority conducting the investigation or proceedings.
    pub requesting_authority: String,
    /// The authority the request is addressed to, if known by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_authority: Option<String>,
    /// Subject of the investigation, prosecution or proceedings.
    pub subject: String,
    /// Nature of the proceedings.
    pub nature: ProceedingNature,
    /// Summary of the relevant facts.
    pub summary_of_facts: String,
    /// Offences concerned, with legal provisions and penalties.
    pub offences: Vec<Offence>,
    /// Kinds of assistance sought.
    pub assistance_sought: Vec<AssistanceType>,
    /// Description of the assistance sought and its purpose.
    pub assistance_details: String,
    /// Persons concerned (suspects, witnesses, victims, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persons: Vec<Person>,
    /// Any particular procedure or requirement the requesting side wishes followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure: Option<String>,
    /// Confidentiality requirement.
    pub confidentiality: Confidentiality,
    /// Urgency.
    pub urgency: Urgency,
    /// Deadline (`YYYY-MM-DD`) and why, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// Legal basis, e.g. `UNTOC art. 18` or a bilateral treaty.
    pub legal_basis: Vec<String>,
    /// Case references at either side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub case_references: Vec<CaseReference>,
    /// Attachments (spec/attachments.md §6.1): at most
    /// [`MAX_ATTACHMENTS`], omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentDescriptor>,
    /// Extension fields (`x-…`).
    #[serde(skip)]
    pub extensions: Extensions,
}

/// Nature of the proceedings behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProceedingNature {
    /// Criminal investigation.
    Investigation,
    /// Prosecution.
    Prosecution,
    /// Judicial proceedings.
    JudicialProceedings,
}

/// An offence with its legal provision and penalty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Offence {
    /// Description, e.g. "trafficking in persons".
    pub description: String,
    /// The legal provision, e.g. "Law 28/2012 art. 6".
    pub legal_provision: String,
    /// The maximum penalty provided.
    pub penalty: String,
}

/// Kinds of assistance (UN Model Treaty art. 1(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AssistanceType {
    /// Taking evidence or statements.
    TakingEvidence,
    /// Service of judicial documents.
    ServiceOfDocuments,
    /// Search and seizure.
    SearchAndSeizure,
    /// Freezing and confiscation of proceeds of crime.
    FreezingConfiscation,
    /// Identifying or locating persons.
    LocatingPersons,
    /// Providing records, documents or information.
    Records,
    /// Hearing by video link.
    VideoLinkHearing,
    /// Temporary transfer of persons in custody.
    TransferOfDetainedPersons,
    /// Examining objects and sites.
    ExaminingObjects,
    /// Other assistance, described in `assistance-details`.
    Other,
}

/// A person concerned by a request. Names are UTF-8 (Arabic, Latin, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Person {
    /// Role in the case.
    pub role: PersonRole,
    /// Name as written in the original script.
    pub name: String,
    /// Latin transliteration, if different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_latin: Option<String>,
    /// Date of birth `YYYY-MM-DD`, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// Nationality (ISO 3166-1 alpha-2), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
    /// Identity document or other identifiers, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<String>,
}

/// Role of a person in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PersonRole {
    /// Suspect or accused.
    Suspect,
    /// Witness.
    Witness,
    /// Victim.
    Victim,
    /// Expert.
    Expert,
    /// Other.
    Other,
}

/// Confidentiality requirement (UN Model Treaty art. 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Confidentiality {
    /// Whether the request and its contents must be kept confidential.
    pub required: bool,
    /// Why, and to what extent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Urgency of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Urgency {
    /// Normal handling.
    Routine,
    /// Urgent.
    Urgent,
    /// Very urgent (e.g. a person in danger, imminent loss of evidence).
    VeryUrgent,
}

/// A deadline for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Deadline {
    /// The date, `YYYY-MM-DD`.
    pub date: String,
    /// Why the date matters (e.g. trial date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A case reference held by some authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CaseReference {
    /// Who holds the reference.
    pub authority: String,
    /// The reference.
    pub reference: String,
}

// ---------------------------------------------------------------------------
// mla-status

/// A status change of an MLA request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MlaStatus {
    /// Message id of the `mla-request` this status refers to.
    pub request_id: MessageId,
    /// The new status.
    pub status: MlaState,
    /// The status the author saw the request in when making the change; lets
    /// the other side tell a change that overtook an earlier one in transit
    /// (retry later) from an illegal one (spec/protocol.md §13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<MlaState>,
    /// Reason or note for the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Grounds for a refusal (UN Model Treaty art. 4); only with `refused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusal_grounds: Vec<RefusalGround>,
    /// The evidence (spec/attachments.md §6.1): only with status
    /// `results-transmitted`, at most [`MAX_ATTACHMENTS`], omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentDescriptor>,
    /// Extension fields (`x-…`).
    #[serde(skip)]
    pub extensions: Extensions,
}

/// States of the MLA request lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum MlaState {
    /// Being prepared by the requesting side.
    Draft,
    /// Sent by the requesting side.
    Submitted,
    /// Received by the requested side's node.
    Delivered,
    /// Registered by the requested side.
    Registered,
    /// Under review.
    UnderReview,
    /// More information is needed from the requesting side.
    SupplementRequested,
    /// Accepted for execution.
    Accepted,
    /// Acceptable subject to conditions.
    ConditionsProposed,
    /// Being executed.
    InExecution,
    /// Partly executed.
    PartiallyExecuted,
    /// Results transmitted.
    ResultsTransmitted,
    /// Closed.
    Closed,
    /// Postponed (UN Model Treaty art. 4(3)).
    Postponed,
    /// Refused.
    Refused,
    /// Withdrawn by the requesting side.
    Withdrawn,
}

/// Grounds for refusal (UN Model Treaty art. 4(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RefusalGround {
    /// Prejudice to sovereignty, security, public order or essential interests.
    EssentialInterests,
    /// The offence is of a political nature.
    PoliticalOffence,
    /// Grounds to believe the request aims at prosecution on account of race,
    /// sex, religion, nationality, ethnic origin or political opinions.
    Discrimination,
    /// The offence is an offence under military law only.
    MilitaryOffence,
    /// Double jeopardy (final judgment or immunity).
    NeBisInIdem,
    /// Compulsory measures inconsistent with the requested side's law.
    InconsistentCompulsoryMeasures,
    /// The act is not an offence in the requested State (dual criminality).
    DualCriminality,
    /// Other grounds, stated in `reason`.
    Other,
}

// ---------------------------------------------------------------------------
// intel-share

/// Shared criminal intelligence (SIENA-style handling and evaluation codes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IntelShare {
    /// The logical share id (the same for every recipient of one share).
    pub share_id: MessageId,
    /// Handling code H0–H3.
    pub handling: HandlingCode,
    /// Source reliability A, B, C or X.
    pub source_grading: SourceGrading,
    /// Information assessment 1–4.
    pub information_grading: u8,
    /// TLP 2.0 marking.
    pub tlp: Tlp,
    /// Classification marking, e.g. "RESTRICTED".
    pub classification: String,
    /// Case id at the originator, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    /// One-line summary.
    pub summary: String,
    /// The intelligence itself.
    pub content: String,
    /// Entities mentioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Entity>,
    /// The agency that first shared this intelligence, when the sender is
    /// passing it on (absent: the sender is the originator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originator: Option<AgencyId>,
    /// Message id of the originator's `permission-answer` granting this
    /// onward dissemination; only with `originator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<MessageId>,
    /// Attachments (spec/attachments.md §6.1): at most
    /// [`MAX_ATTACHMENTS`], omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentDescriptor>,
    /// Extension fields (`x-…`).
    #[serde(skip)]
    pub extensions: Extensions,
}

/// Handling codes (as used by SIENA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HandlingCode {
    /// H0: no restriction beyond the classification.
    H0,
    /// H1: not to be used as evidence in judicial proceedings without permission.
    H1,
    /// H2: no onward dissemination without permission of the originator.
    H2,
    /// H3: other restrictions, stated in the content.
    H3,
}

/// Source reliability (4x4 evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SourceGrading {
    /// A: no doubt about reliability.
    A,
    /// B: mostly reliable.
    B,
    /// C: mostly not reliable.
    C,
    /// X: reliability cannot be assessed.
    X,
}

/// Traffic Light Protocol 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Tlp {
    /// TLP:CLEAR.
    #[serde(rename = "clear")]
    Clear,
    /// TLP:GREEN.
    #[serde(rename = "green")]
    Green,
    /// TLP:AMBER.
    #[serde(rename = "amber")]
    Amber,
    /// TLP:AMBER+STRICT.
    #[serde(rename = "amber+strict")]
    AmberStrict,
    /// TLP:RED.
    #[serde(rename = "red")]
    Red,
}

/// An entity mentioned in intelligence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Entity {
    /// What kind of entity.
    #[serde(rename = "type")]
    pub entity_type: EntityType,
    /// The value (a name, a number, an address, …).
    pub value: String,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Types of entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EntityType {
    /// A natural person.
    Person,
    /// An organisation or company.
    Organisation,
    /// A vehicle or vessel.
    Vehicle,
    /// A telephone number.
    Phone,
    /// A bank or payment account.
    Account,
    /// A place.
    Location,
    /// An identity or travel document.
    Document,
    /// Anything else.
    Other,
}

// ---------------------------------------------------------------------------
// permission-request, permission-answer, intel-retraction, intel-correction

/// A recipient of a share asks the originator for permission to pass it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PermissionRequest {
    /// The share concerned.
    pub share_id: MessageId,
    /// The agency the share would be passed on to.
    pub target: AgencyId,
    /// Why it should be passed on.
    pub purpose: String,
}

/// The originator's answer to a permission request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PermissionAnswer {
    /// The share concerned.
    pub share_id: MessageId,
    /// The agency the share may (or may not) be passed on to.
    pub target: AgencyId,
    /// Granted or denied.
    pub decision: PermissionDecision,
    /// Message id of the `permission-request` answered, if any (an
    /// originator may grant without being asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<MessageId>,
    /// Conditions attached to a grant, or why it is denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<String>,
}

/// A decision on a permission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PermissionDecision {
    /// The share may be passed on to the target.
    Granted,
    /// It may not (this also revokes an earlier grant).
    Denied,
}

/// The originator withdraws a share: recipients must stop using it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IntelRetraction {
    /// The share withdrawn.
    pub share_id: MessageId,
    /// Why.
    pub reason: String,
}

/// The originator corrects a share: the new text replaces the old.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IntelCorrection {
    /// The share corrected.
    pub share_id: MessageId,
    /// The corrected one-line summary, if it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The corrected intelligence, replacing `content` of the share.
    pub content: String,
    /// What was wrong.
    pub reason: String,
}

// ---------------------------------------------------------------------------
// receipt and error

/// A signed acknowledgement of a received envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Receipt {
    /// Message id of the acknowledged message.
    pub message_id: MessageId,
    /// SHA-256 of the acknowledged envelope bytes, exactly as received.
    pub envelope_digest: Digest,
    /// Index of the `received` entry in the recipient's audit log.
    pub log_index: u64,
    /// When the recipient accepted it, seconds since the Unix epoch.
    pub received_at: u64,
    /// What the recipient received of each attachment of the message, in
    /// the message's order (spec/protocol.md §4.4b); omitted when the
    /// message has none, so such a receipt is byte for byte the receipt of
    /// a version without attachments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ReceivedAttachment>,
}

impl Receipt {
    /// True if this receipt acknowledges exactly the attachments `sent`,
    /// in their order (spec/protocol.md §4.4b): what the sender checks
    /// before it takes the receipt as proof of what was received.
    pub fn acknowledges(&self, sent: &[AttachmentDescriptor]) -> bool {
        self.attachments.len() == sent.len()
            && self
                .attachments
                .iter()
                .zip(sent)
                .all(|(r, d)| *r == ReceivedAttachment::of(d))
    }
}

/// Most attachments one message carries (spec/protocol.md §8): every
/// attachment's ciphertext root and size must fit in one audit-log detail
/// value of 1024 bytes (spec/audit-log.md §2.3).
pub const MAX_ATTACHMENTS: usize = 8;

/// One attachment as a receipt acknowledges it: the plaintext digest and
/// size the recipient checked after decrypting, and the ciphertext root and
/// size it stored (messages.cddl `received-attachment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReceivedAttachment {
    /// Plaintext bytes.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub digest: Digest,
    /// Root of the hash tree over the ciphertext chunks.
    pub ciphertext_root: Digest,
    /// Ciphertext bytes.
    pub ciphertext_size: u64,
}

impl ReceivedAttachment {
    /// What a receipt says of the attachment `d` once it is stored and
    /// checked.
    pub fn of(d: &AttachmentDescriptor) -> Self {
        Self {
            size: d.size(),
            digest: Digest(*d.digest().as_bytes()),
            ciphertext_root: Digest(*d.ciphertext_root().as_bytes()),
            ciphertext_size: d.layout().ciphertext_size(),
        }
    }
}

/// A typed error answer (spec/protocol.md §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ErrorBody {
    /// The error code.
    pub code: ErrorCode,
    /// The message the error refers to, when it could be identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// Human-readable detail; never reveals which cryptographic check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
