//! The data the fake serves: repositories with issues, pull requests (issues and pull
//! requests share one numbering, as on GitHub), labels and comments, built from a [`Seed`]
//! and changed by the writes the API offers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the fake starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    pub repos: Vec<RepoSeed>,
}

impl Default for Seed {
    /// One repository, `octo/hello`: 10 issues (2 closed), 3 pull requests, 2 comments each.
    fn default() -> Seed {
        Seed::new().repo(RepoSeed::new("octo", "hello"))
    }
}

impl Seed {
    /// No repository.
    pub fn new() -> Seed {
        Seed { repos: Vec::new() }
    }

    pub fn repo(mut self, repo: RepoSeed) -> Seed {
        self.repos.push(repo);
        self
    }
}

/// One repository: `issues` issues numbered from 1 (the first `closed` of them closed),
/// then `pulls` open pull requests, each with `comments` comments, labels `bug` and
/// `enhancement` in turn.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoSeed {
    pub owner: String,
    pub name: String,
    pub issues: u64,
    pub closed: u64,
    pub pulls: u64,
    pub comments: u64,
}

impl RepoSeed {
    pub fn new(owner: &str, name: &str) -> RepoSeed {
        RepoSeed {
            owner: owner.to_string(),
            name: name.to_string(),
            issues: 10,
            closed: 2,
            pulls: 3,
            comments: 2,
        }
    }

    pub fn issues(mut self, issues: u64) -> RepoSeed {
        self.issues = issues;
        self
    }

    pub fn closed(mut self, closed: u64) -> RepoSeed {
        self.closed = closed;
        self
    }

    pub fn pulls(mut self, pulls: u64) -> RepoSeed {
        self.pulls = pulls;
        self
    }

    pub fn comments(mut self, comments: u64) -> RepoSeed {
        self.comments = comments;
        self
    }
}

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// ISO 8601 in UTC, to the second, as GitHub writes times.
pub fn iso(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub author: String,
    pub body: String,
    pub created: Millis,
    pub updated: Millis,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub head: String,
    pub base: String,
    pub draft: bool,
}

/// An issue or a pull request.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub open: bool,
    pub author: String,
    pub labels: Vec<String>,
    pub comments: Vec<Comment>,
    pub created: Millis,
    pub updated: Millis,
    pub closed_at: Option<Millis>,
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    /// The last change to the repository or anything in it.
    pub updated: Millis,
    /// Item `n` is at index `n - 1`.
    pub items: Vec<Item>,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn item(&self, number: u64) -> Option<&Item> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.items.get(index)
    }

    pub fn item_mut(&mut self, number: u64) -> Option<&mut Item> {
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        self.items.get_mut(index)
    }
}

/// Every repository, and the ids handed out so far.
#[derive(Debug)]
pub struct Data {
    pub repos: Vec<Repo>,
    next_id: u64,
    /// GraphQL's view of each item (repository index, number), built on first use and
    /// dropped by any write to its repository.
    pub graphql_items: std::sync::Mutex<std::collections::HashMap<(usize, u64), serde_json::Value>>,
}

const LABELS: [&str; 2] = ["bug", "enhancement"];

impl Data {
    pub fn new(seed: &Seed) -> Data {
        let mut data = Data {
            repos: Vec::new(),
            next_id: 1000,
            graphql_items: std::sync::Mutex::new(std::collections::HashMap::new()),
        };
        let base = now_ms().saturating_sub(24 * 3600 * 1000);
        for spec in &seed.repos {
            let id = data.id();
            let mut repo = Repo {
                id,
                owner: spec.owner.clone(),
                name: spec.name.clone(),
                updated: base,
                items: Vec::new(),
            };
            for n in 1..=spec.issues + spec.pulls {
                let created = base + n * 60_000;
                let is_pull = n > spec.issues;
                let comments = (1..=spec.comments)
                    .map(|c| Comment {
                        id: data.id(),
                        author: spec.owner.clone(),
                        body: format!("Comment {c} on #{n}."),
                        created: created + c * 1000,
                        updated: created + c * 1000,
                    })
                    .collect();
                repo.items.push(Item {
                    id: data.id(),
                    number: n,
                    title: if is_pull {
                        format!("Pull request {n}")
                    } else {
                        format!("Issue {n}")
                    },
                    body: format!("The body of #{n}."),
                    open: is_pull || n > spec.closed,
                    author: spec.owner.clone(),
                    labels: vec![LABELS[(n % 2) as usize].to_string()],
                    comments,
                    created,
                    updated: created + spec.comments * 1000,
                    closed_at: (!is_pull && n <= spec.closed).then_some(created + 3_600_000),
                    pull: is_pull.then(|| Pull {
                        head: format!("feature-{n}"),
                        base: "main".to_string(),
                        draft: false,
                    }),
                });
            }
            repo.updated = repo.items.iter().map(|i| i.updated).max().unwrap_or(base);
            data.repos.push(repo);
        }
        data
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn repo(&self, owner: &str, name: &str) -> Option<usize> {
        self.repos
            .iter()
            .position(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
    }

    /// A change time for a write to `repo`: now, but always past the repository's last
    /// change by a whole second, so `Last-Modified` (seconds) moves with every write.
    fn touch(&mut self, repo: usize) -> Millis {
        self.graphql_items
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(r, _), _| *r != repo);
        let repo = &mut self.repos[repo];
        let at = now_ms().max((repo.updated / 1000 + 1) * 1000);
        repo.updated = at;
        at
    }

    pub fn create_issue(&mut self, repo: usize, author: &str, title: String, body: String, labels: Vec<String>) -> u64 {
        let id = self.id();
        let at = self.touch(repo);
        let repo = &mut self.repos[repo];
        let number = repo.items.len() as u64 + 1;
        repo.items.push(Item {
            id,
            number,
            title,
            body,
            open: true,
            author: author.to_string(),
            labels,
            comments: Vec::new(),
            created: at,
            updated: at,
            closed_at: None,
            pull: None,
        });
        number
    }

    /// Adds a comment to item `number` (which must exist); returns its id.
    pub fn add_comment(&mut self, repo: usize, number: u64, author: &str, body: String) -> u64 {
        let id = self.id();
        let at = self.touch(repo);
        let item = self.repos[repo].item_mut(number).expect("checked item");
        item.comments.push(Comment {
            id,
            author: author.to_string(),
            body,
            created: at,
            updated: at,
        });
        item.updated = at;
        id
    }

    /// Changes item `number` (which must exist) with `change`, and records the change.
    pub fn edit(&mut self, repo: usize, number: u64, change: impl FnOnce(&mut Item)) {
        let at = self.touch(repo);
        let item = self.repos[repo].item_mut(number).expect("checked item");
        let was_open = item.open;
        change(item);
        if was_open && !item.open {
            item.closed_at = Some(at);
        } else if item.open {
            item.closed_at = None;
        }
        item.updated = at;
    }

    /// Finds an issue or pull request by the node id the API gives it.
    pub fn find_node(&self, id: &str) -> Option<(usize, u64)> {
        self.repos.iter().enumerate().find_map(|(r, repo)| {
            repo.items
                .iter()
                .find(|item| node_id(item) == id)
                .map(|item| (r, item.number))
        })
    }
}

/// The GraphQL node id of an issue or pull request.
pub fn node_id(item: &Item) -> String {
    match item.pull {
        Some(_) => format!("PR_{}", item.id),
        None => format!("I_{}", item.id),
    }
}

/// A label's description and colour, by name.
pub fn label_color(name: &str) -> &'static str {
    match name {
        "bug" => "d73a4a",
        "enhancement" => "a2eeef",
        _ => "ededed",
    }
}

/// A stable id for a label name.
pub fn label_id(name: &str) -> u64 {
    name.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000_000
}
