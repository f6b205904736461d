//! Tokens: what the lexer produces and the parser consumes.

use std::fmt;

use crate::ast::Name;

/// One token of MindScript source.
///
/// Comments are dropped by the lexer, except `///` doc comments, which become [`Tok::Doc`]
/// and are kept by the layout pass only when they precede a `fn` (or its attributes).
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier (`_` included: it is a wildcard or the REPL's last value).
    Ident(Name),
    /// An integer literal that fits in `i64`.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal, escapes resolved.
    Str(String),
    /// One or more `///` doc comment lines, joined with newlines.
    Doc(String),
    /// `let`.
    Let,
    /// `fn`.
    Fn,
    /// `return`.
    Return,
    /// `if`.
    If,
    /// `else`.
    Else,
    /// `for`.
    For,
    /// `in`.
    In,
    /// `while`.
    While,
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `true`.
    True,
    /// `false`.
    False,
    /// `import`.
    Import,
    /// `as`.
    As,
    /// `type`.
    Type,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `[`.
    LBracket,
    /// `]`.
    RBracket,
    /// `{` opening a block (the lexer produces this for every `{`).
    LBrace,
    /// `{` opening a record literal, type or pattern (`{name: ...`), decided by the layout
    /// pass.
    LRecord,
    /// `}`.
    RBrace,
    /// `,`.
    Comma,
    /// `;`.
    Semi,
    /// `:`.
    Colon,
    /// `.`.
    Dot,
    /// `..`.
    DotDot,
    /// `...`.
    Ellipsis,
    /// `->`.
    Arrow,
    /// `=`.
    Assign,
    /// `+=`.
    PlusEq,
    /// `-=`.
    MinusEq,
    /// `*=`.
    StarEq,
    /// `/=`.
    SlashEq,
    /// `==`.
    EqEq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `&&`.
    AndAnd,
    /// `||` (also a closure without parameters).
    OrOr,
    /// `|`.
    Pipe,
    /// `+`.
    Plus,
    /// `-`.
    Minus,
    /// `*`.
    Star,
    /// `/`.
    Slash,
    /// `%`.
    Percent,
    /// `@` (matrix product, or an attribute before `fn`).
    At,
    /// `**`.
    StarStar,
    /// `!`.
    Bang,
    /// `?`.
    Question,
    /// A newline that ends a statement (the layout pass drops the others).
    Newline,
    /// Something already reported as an error (a bad character, an out-of-range literal,
    /// a region cut for nesting too deeply); it parses as an error expression.
    Error,
}

impl Tok {
    /// The keyword spelled `word`, if it is one.
    pub fn keyword(word: &str) -> Option<Tok> {
        Some(match word {
            "let" => Tok::Let,
            "fn" => Tok::Fn,
            "return" => Tok::Return,
            "if" => Tok::If,
            "else" => Tok::Else,
            "for" => Tok::For,
            "in" => Tok::In,
            "while" => Tok::While,
            "break" => Tok::Break,
            "continue" => Tok::Continue,
            "true" => Tok::True,
            "false" => Tok::False,
            "import" => Tok::Import,
            "as" => Tok::As,
            "type" => Tok::Type,
            _ => return None,
        })
    }

    /// True for the tokens that cannot end an expression or statement: binary operators,
    /// `,`, the assignments, `|`, `.`, `->`, `!` and `else`. The layout pass joins the next
    /// line after them and the REPL asks for another line, so both use this one list.
    pub fn expects_more(&self) -> bool {
        self.is_binary_op()
            || matches!(
                self,
                Tok::Comma
                    | Tok::Assign
                    | Tok::PlusEq
                    | Tok::MinusEq
                    | Tok::StarEq
                    | Tok::SlashEq
                    | Tok::Pipe
                    | Tok::Dot
                    | Tok::Arrow
                    | Tok::Bang
                    | Tok::Else
            )
    }

    /// True for the tokens of binary operators (`-` and `||` included, which are also
    /// prefix forms).
    pub fn is_binary_op(&self) -> bool {
        matches!(
            self,
            Tok::OrOr
                | Tok::AndAnd
                | Tok::EqEq
                | Tok::Ne
                | Tok::Lt
                | Tok::Le
                | Tok::Gt
                | Tok::Ge
                | Tok::DotDot
                | Tok::Plus
                | Tok::Minus
                | Tok::Star
                | Tok::Slash
                | Tok::Percent
                | Tok::At
                | Tok::StarStar
        )
    }

    /// True for opening brackets of every kind.
    pub fn is_opener(&self) -> bool {
        matches!(
            self,
            Tok::LParen | Tok::LBracket | Tok::LBrace | Tok::LRecord
        )
    }

    /// True for closing brackets of every kind.
    pub fn is_closer(&self) -> bool {
        matches!(self, Tok::RParen | Tok::RBracket | Tok::RBrace)
    }
}

impl fmt::Display for Tok {
    /// How a token is named in messages: punctuation and keywords in backticks, literals
    /// by kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Tok::Ident(name) => return write!(f, "identifier `{name}`"),
            Tok::Int(v) => return write!(f, "number `{v}`"),
            Tok::Float(v) => return write!(f, "number `{v:?}`"),
            Tok::Str(_) => "a string",
            Tok::Doc(_) => "a doc comment",
            Tok::Let => "`let`",
            Tok::Fn => "`fn`",
            Tok::Return => "`return`",
            Tok::If => "`if`",
            Tok::Else => "`else`",
            Tok::For => "`for`",
            Tok::In => "`in`",
            Tok::While => "`while`",
            Tok::Break => "`break`",
            Tok::Continue => "`continue`",
            Tok::True => "`true`",
            Tok::False => "`false`",
            Tok::Import => "`import`",
            Tok::As => "`as`",
            Tok::Type => "`type`",
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::LBrace | Tok::LRecord => "`{`",
            Tok::RBrace => "`}`",
            Tok::Comma => "`,`",
            Tok::Semi => "`;`",
            Tok::Colon => "`:`",
            Tok::Dot => "`.`",
            Tok::DotDot => "`..`",
            Tok::Ellipsis => "`...`",
            Tok::Arrow => "`->`",
            Tok::Assign => "`=`",
            Tok::PlusEq => "`+=`",
            Tok::MinusEq => "`-=`",
            Tok::StarEq => "`*=`",
            Tok::SlashEq => "`/=`",
            Tok::EqEq => "`==`",
            Tok::Ne => "`!=`",
            Tok::Lt => "`<`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Ge => "`>=`",
            Tok::AndAnd => "`&&`",
            Tok::OrOr => "`||`",
            Tok::Pipe => "`|`",
            Tok::Plus => "`+`",
            Tok::Minus => "`-`",
            Tok::Star => "`*`",
            Tok::Slash => "`/`",
            Tok::Percent => "`%`",
            Tok::At => "`@`",
            Tok::StarStar => "`**`",
            Tok::Bang => "`!`",
            Tok::Question => "`?`",
            Tok::Newline => "end of line",
            Tok::Error => "an invalid token",
        };
        f.write_str(text)
    }
}
