//! Lexing and parsing.
