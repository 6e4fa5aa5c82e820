//! CL4 status codes: the `statuscode` replies the server and client libraries share.

/// A CL4 status code; [`code`](Self::code) is the exact wire text.
///
/// ```
/// use cloudlink::StatusCode;
/// assert_eq!(StatusCode::Ok.code(), "I:100 | OK");
/// assert_eq!(StatusCode::IdNotFound.code_id(), 103);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// `I:0 | Test`.
    Test,
    /// `I:1 | Echo`.
    Echo,
    /// `I:100 | OK`: the command succeeded.
    Ok,
    /// `E:101 | Syntax`: a field is missing or has the wrong type.
    Syntax,
    /// `E:102 | Datatype`: a value of a type the command cannot use.
    Datatype,
    /// `E:103 | ID not found`: no client matched.
    IdNotFound,
    /// `E:104 | ID not specific enough`: a username matched several clients.
    IdNotSpecific,
    /// `E:105 | Internal server error`.
    InternalError,
    /// `E:106 | Empty packet`.
    EmptyPacket,
    /// `E:107 | ID already set`: the username cannot change.
    IdAlreadySet,
    /// `E:108 | Refused`.
    Refused,
    /// `E:109 | Invalid command`.
    InvalidCommand,
    /// `E:110 | Command disabled`.
    CommandDisabled,
    /// `E:111 | ID required`: set a username first.
    IdRequired,
    /// `E:112 | ID conflict`.
    IdConflict,
    /// `E:113 | Too large`.
    TooLarge,
    /// `E:114 | JSON error`.
    JsonError,
    /// `E:115 | Room not joined`.
    RoomNotJoined,
}

impl StatusCode {
    /// The numeric `code_id`.
    pub fn code_id(self) -> u16 {
        match self {
            StatusCode::Test => 0,
            StatusCode::Echo => 1,
            StatusCode::Ok => 100,
            StatusCode::Syntax => 101,
            StatusCode::Datatype => 102,
            StatusCode::IdNotFound => 103,
            StatusCode::IdNotSpecific => 104,
            StatusCode::InternalError => 105,
            StatusCode::EmptyPacket => 106,
            StatusCode::IdAlreadySet => 107,
            StatusCode::Refused => 108,
            StatusCode::InvalidCommand => 109,
            StatusCode::CommandDisabled => 110,
            StatusCode::IdRequired => 111,
            StatusCode::IdConflict => 112,
            StatusCode::TooLarge => 113,
            StatusCode::JsonError => 114,
            StatusCode::RoomNotJoined => 115,
        }
    }

    /// The `code` text: type letter, colon, number, ` | `, name.
    pub fn code(self) -> &'static str {
        match self {
            StatusCode::Test => "I:0 | Test",
            StatusCode::Echo => "I:1 | Echo",
            StatusCode::Ok => "I:100 | OK",
            StatusCode::Syntax => "E:101 | Syntax",
            StatusCode::Datatype => "E:102 | Datatype",
            StatusCode::IdNotFound => "E:103 | ID not found",
            StatusCode::IdNotSpecific => "E:104 | ID not specific enough",
            StatusCode::InternalError => "E:105 | Internal server error",
            StatusCode::EmptyPacket => "E:106 | Empty packet",
            StatusCode::IdAlreadySet => "E:107 | ID already set",
            StatusCode::Refused => "E:108 | Refused",
            StatusCode::InvalidCommand => "E:109 | Invalid command",
            StatusCode::CommandDisabled => "E:110 | Command disabled",
            StatusCode::IdRequired => "E:111 | ID required",
            StatusCode::IdConflict => "E:112 | ID conflict",
            StatusCode::TooLarge => "E:113 | Too large",
            StatusCode::JsonError => "E:114 | JSON error",
            StatusCode::RoomNotJoined => "E:115 | Room not joined",
        }
    }
}
