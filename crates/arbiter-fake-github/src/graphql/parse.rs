//! A GraphQL document parser for executable documents: operations (query, mutation) with
//! variable definitions and defaults, fields with aliases and arguments, inline fragments,
//! named fragments and their spreads. Directives are read and ignored. Enough for what
//! clients such as `gh` send; it is not a validator.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Var(String),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Enum(String),
    List(Vec<Val>),
    Object(Vec<(String, Val)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub args: Vec<(String, Val)>,
    pub selection: Vec<Selection>,
}

impl Field {
    /// The key of this field in the response.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    pub fn arg(&self, name: &str) -> Option<&Val> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    Field(Field),
    /// `... on Type { … }` (or `... { … }` without a type).
    Inline {
        on: Option<String>,
        selection: Vec<Selection>,
    },
    /// `...Name`
    Spread(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Mutation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub kind: Kind,
    pub name: Option<String>,
    /// Variable names and their defaults.
    pub variables: Vec<(String, Option<Val>)>,
    pub selection: Vec<Selection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    pub on: String,
    pub selection: Vec<Selection>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub operations: Vec<Operation>,
    pub fragments: HashMap<String, Fragment>,
}

impl Document {
    /// The operation to run: the one named `name`, or the only one.
    pub fn operation(&self, name: Option<&str>) -> Result<&Operation, String> {
        match name {
            Some(name) => self
                .operations
                .iter()
                .find(|o| o.name.as_deref() == Some(name))
                .ok_or_else(|| format!("Unknown operation named '{name}'.")),
            None if self.operations.len() == 1 => Ok(&self.operations[0]),
            None => Err("An operation name is required when the document has several.".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Punct(char),
    Spread,
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '!' | '$' | '(' | ')' | ':' | '=' | '@' | '[' | ']' | '{' | '}' | '|' | '&' => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
            '.' => {
                if chars.get(i..i + 3) != Some(&['.', '.', '.']) {
                    return Err(format!("Syntax error: unexpected '.' at character {i}."));
                }
                tokens.push(Token::Spread);
                i += 3;
            }
            '"' => {
                if chars.get(i..i + 3) == Some(&['"', '"', '"']) {
                    let start = i + 3;
                    let mut end = start;
                    while end + 2 < chars.len() && chars[end..end + 3] != ['"', '"', '"'] {
                        end += 1;
                    }
                    if end + 2 >= chars.len() {
                        return Err("Syntax error: unterminated block string.".into());
                    }
                    tokens.push(Token::Str(chars[start..end].iter().collect()));
                    i = end + 3;
                    continue;
                }
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("Syntax error: unterminated string.".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                'b' => '\u{8}',
                                'f' => '\u{c}',
                                'u' => {
                                    let hex: String = chars.get(i..i + 4).unwrap_or(&[]).iter().collect();
                                    i += 4;
                                    u32::from_str_radix(&hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .ok_or_else(|| format!("Syntax error: bad escape \\u{hex}."))?
                                }
                                other => other,
                            });
                        }
                        c => s.push(c),
                    }
                }
                tokens.push(Token::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                let mut float = false;
                while i < chars.len() && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    float |= matches!(chars[i], '.' | 'e' | 'E');
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let bad = || format!("Syntax error: bad number '{text}'.");
                tokens.push(match float {
                    true => Token::Float(text.parse().map_err(|_| bad())?),
                    false => Token::Int(text.parse().map_err(|_| bad())?),
                });
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..i].iter().collect()));
            }
            other => return Err(format!("Syntax error: unexpected character '{other}'.")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

pub fn parse(text: &str) -> Result<Document, String> {
    let mut parser = Parser {
        tokens: lex(text)?,
        at: 0,
    };
    let mut document = Document::default();
    while let Some(token) = parser.peek().cloned() {
        match token {
            Token::Punct('{') => document.operations.push(Operation {
                kind: Kind::Query,
                name: None,
                variables: Vec::new(),
                selection: parser.selection_set()?,
            }),
            Token::Name(word) if word == "query" || word == "mutation" => {
                parser.at += 1;
                let kind = match word.as_str() {
                    "query" => Kind::Query,
                    _ => Kind::Mutation,
                };
                let name = match parser.peek() {
                    Some(Token::Name(_)) => Some(parser.name()?),
                    _ => None,
                };
                let variables = parser.variable_definitions()?;
                parser.directives()?;
                let selection = parser.selection_set()?;
                document.operations.push(Operation {
                    kind,
                    name,
                    variables,
                    selection,
                });
            }
            Token::Name(word) if word == "fragment" => {
                parser.at += 1;
                let name = parser.name()?;
                parser.keyword("on")?;
                let on = parser.name()?;
                parser.directives()?;
                let selection = parser.selection_set()?;
                document.fragments.insert(name, Fragment { on, selection });
            }
            Token::Name(word) if word == "subscription" => {
                return Err("Subscriptions are not supported.".into());
            }
            other => return Err(format!("Syntax error: unexpected {other:?}.")),
        }
    }
    if document.operations.is_empty() {
        return Err("The document has no operation.".into());
    }
    Ok(document)
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Result<Token, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("Syntax error: unexpected end of document.")?;
        self.at += 1;
        Ok(token)
    }

    fn punct(&mut self, c: char) -> Result<(), String> {
        match self.next()? {
            Token::Punct(p) if p == c => Ok(()),
            other => Err(format!("Syntax error: expected '{c}', found {other:?}.")),
        }
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Token::Punct(c))
    }

    fn name(&mut self) -> Result<String, String> {
        match self.next()? {
            Token::Name(name) => Ok(name),
            other => Err(format!("Syntax error: expected a name, found {other:?}.")),
        }
    }

    fn keyword(&mut self, word: &str) -> Result<(), String> {
        match self.name()? {
            name if name == word => Ok(()),
            other => Err(format!("Syntax error: expected '{word}', found '{other}'.")),
        }
    }

    fn variable_definitions(&mut self) -> Result<Vec<(String, Option<Val>)>, String> {
        let mut variables = Vec::new();
        if !self.is_punct('(') {
            return Ok(variables);
        }
        self.at += 1;
        while !self.is_punct(')') {
            self.punct('$')?;
            let name = self.name()?;
            self.punct(':')?;
            self.type_ref()?;
            let default = match self.is_punct('=') {
                true => {
                    self.at += 1;
                    Some(self.value()?)
                }
                false => None,
            };
            self.directives()?;
            variables.push((name, default));
        }
        self.at += 1;
        Ok(variables)
    }

    fn type_ref(&mut self) -> Result<(), String> {
        if self.is_punct('[') {
            self.at += 1;
            self.type_ref()?;
            self.punct(']')?;
        } else {
            self.name()?;
        }
        if self.is_punct('!') {
            self.at += 1;
        }
        Ok(())
    }

    fn directives(&mut self) -> Result<(), String> {
        while self.is_punct('@') {
            self.at += 1;
            self.name()?;
            self.arguments()?;
        }
        Ok(())
    }

    fn arguments(&mut self) -> Result<Vec<(String, Val)>, String> {
        let mut args = Vec::new();
        if !self.is_punct('(') {
            return Ok(args);
        }
        self.at += 1;
        while !self.is_punct(')') {
            let name = self.name()?;
            self.punct(':')?;
            args.push((name, self.value()?));
        }
        self.at += 1;
        Ok(args)
    }

    fn value(&mut self) -> Result<Val, String> {
        Ok(match self.next()? {
            Token::Punct('$') => Val::Var(self.name()?),
            Token::Int(i) => Val::Int(i),
            Token::Float(f) => Val::Float(f),
            Token::Str(s) => Val::Str(s),
            Token::Name(n) => match n.as_str() {
                "true" => Val::Bool(true),
                "false" => Val::Bool(false),
                "null" => Val::Null,
                _ => Val::Enum(n),
            },
            Token::Punct('[') => {
                let mut items = Vec::new();
                while !self.is_punct(']') {
                    items.push(self.value()?);
                }
                self.at += 1;
                Val::List(items)
            }
            Token::Punct('{') => {
                let mut fields = Vec::new();
                while !self.is_punct('}') {
                    let name = self.name()?;
                    self.punct(':')?;
                    fields.push((name, self.value()?));
                }
                self.at += 1;
                Val::Object(fields)
            }
            other => return Err(format!("Syntax error: expected a value, found {other:?}.")),
        })
    }

    fn selection_set(&mut self) -> Result<Vec<Selection>, String> {
        self.punct('{')?;
        let mut selection = Vec::new();
        while !self.is_punct('}') {
            if self.peek() == Some(&Token::Spread) {
                self.at += 1;
                match self.peek() {
                    Some(Token::Name(n)) if n == "on" => {
                        self.at += 1;
                        let on = Some(self.name()?);
                        self.directives()?;
                        let inner = self.selection_set()?;
                        selection.push(Selection::Inline { on, selection: inner });
                    }
                    Some(Token::Name(_)) => {
                        let name = self.name()?;
                        self.directives()?;
                        selection.push(Selection::Spread(name));
                    }
                    _ => {
                        self.directives()?;
                        let inner = self.selection_set()?;
                        selection.push(Selection::Inline {
                            on: None,
                            selection: inner,
                        });
                    }
                }
                continue;
            }
            let first = self.name()?;
            let (alias, name) = match self.is_punct(':') {
                true => {
                    self.at += 1;
                    (Some(first), self.name()?)
                }
                false => (None, first),
            };
            let args = self.arguments()?;
            self.directives()?;
            let inner = match self.is_punct('{') {
                true => self.selection_set()?,
                false => Vec::new(),
            };
            selection.push(Selection::Field(Field {
                alias,
                name,
                args,
                selection: inner,
            }));
        }
        self.at += 1;
        Ok(selection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_gh_sends_for_a_pull_request() {
        let doc = parse(
            r#"fragment pr on PullRequest{number,headRepositoryOwner{id,login,...on User{name}}}
            query PullRequestList($owner: String!, $limit: Int!, $state: [PullRequestState!] = OPEN) {
              repository(owner: $owner, name: "r") {
                pullRequests(states: $state, first: $limit, orderBy: {field: CREATED_AT, direction: DESC}) {
                  nodes { ...pr }
                  rollup: commits(last: 1) {nodes {__typename...on StatusContext {context}}}
                }
              }
            }"#,
        )
        .unwrap();
        let op = doc.operation(None).unwrap();
        assert_eq!(op.kind, Kind::Query);
        assert_eq!(op.name.as_deref(), Some("PullRequestList"));
        assert_eq!(
            op.variables[2],
            ("state".to_string(), Some(Val::Enum("OPEN".to_string())))
        );
        let Selection::Field(repo) = &op.selection[0] else {
            panic!("not a field")
        };
        assert_eq!(repo.arg("name"), Some(&Val::Str("r".to_string())));
        let Selection::Field(pulls) = &repo.selection[0] else {
            panic!("not a field")
        };
        assert_eq!(
            pulls.arg("orderBy"),
            Some(&Val::Object(vec![
                ("field".to_string(), Val::Enum("CREATED_AT".to_string())),
                ("direction".to_string(), Val::Enum("DESC".to_string()))
            ]))
        );
        let Selection::Field(rollup) = &pulls.selection[1] else {
            panic!("not a field")
        };
        assert_eq!(rollup.key(), "rollup");
        assert_eq!(rollup.name, "commits");
        assert!(doc.fragments.contains_key("pr"));
    }

    #[test]
    fn reports_syntax_errors() {
        assert!(parse("query { a(").is_err());
        assert!(parse("").is_err());
        assert!(parse("query { a(x: \"unterminated) }").is_err());
    }
}
