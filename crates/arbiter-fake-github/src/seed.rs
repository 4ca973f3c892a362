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
    pub reactions: Vec<Reaction>,
}

/// A reaction (`+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`, `rocket`, `eyes`) by a
/// user. As on GitHub, reacting does not move the issue's or comment's `updated_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub content: String,
    pub user: String,
}

/// The reactions GitHub knows, as REST names them, with GraphQL's names.
pub const REACTIONS: [(&str, &str); 8] = [
    ("+1", "THUMBS_UP"),
    ("-1", "THUMBS_DOWN"),
    ("laugh", "LAUGH"),
    ("hooray", "HOORAY"),
    ("confused", "CONFUSED"),
    ("heart", "HEART"),
    ("rocket", "ROCKET"),
    ("eyes", "EYES"),
];

#[derive(Debug, Clone)]
pub struct Pull {
    pub head: String,
    pub base: String,
    pub draft: bool,
    /// The head branch's commits, oldest first (40 hex digits each): a push adds one.
    pub commits: Vec<String>,
}

impl Pull {
    /// The head commit's SHA.
    pub fn head_sha(&self) -> &str {
        self.commits.last().map(String::as_str).unwrap_or_default()
    }
}

/// A commit status (`POST /repos/{o}/{r}/statuses/{sha}`): `state` is error, failure,
/// pending or success.
#[derive(Debug, Clone)]
pub struct Status {
    pub id: u64,
    pub sha: String,
    pub context: String,
    pub state: String,
    pub created: Millis,
}

/// A check run (`POST /repos/{o}/{r}/check-runs`): `status` queued, in_progress or
/// completed; `conclusion` once completed.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub started: Millis,
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
    pub reactions: Vec<Reaction>,
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
    /// The last change to the repository or anything in it (the `Last-Modified` of its
    /// issue and pull request lists).
    pub updated: Millis,
    /// The last change to the repository's own object, its `updated_at`: its creation, or
    /// an issue opened or closed (its `open_issues_count`). As on GitHub, a comment, a
    /// label or an edit of an issue changes the issue, not the repository: the
    /// repository's answer (and its ETag) stays the same.
    pub own_updated: Millis,
    /// Item `n` is at index `n - 1`.
    pub items: Vec<Item>,
    /// Commit statuses and check runs, of any commit (told by their `sha`), oldest first.
    pub statuses: Vec<Status>,
    pub check_runs: Vec<CheckRun>,
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
                own_updated: base,
                items: Vec::new(),
                statuses: Vec::new(),
                check_runs: Vec::new(),
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
                        reactions: Vec::new(),
                    })
                    .collect();
                let head = format!("{:040x}", data.id());
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
                    reactions: Vec::new(),
                    created,
                    updated: created + spec.comments * 1000,
                    closed_at: (!is_pull && n <= spec.closed).then_some(created + 3_600_000),
                    pull: is_pull.then(|| Pull {
                        head: format!("feature-{n}"),
                        base: "main".to_string(),
                        draft: false,
                        commits: vec![head.clone()],
                    }),
                });
            }
            repo.updated = repo.items.iter().map(|i| i.updated).max().unwrap_or(base);
            repo.own_updated = repo.updated;
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
        self.changed(repo);
        let repo = &mut self.repos[repo];
        let at = now_ms().max((repo.updated / 1000 + 1) * 1000);
        repo.updated = at;
        at
    }

    pub fn create_issue(&mut self, repo: usize, author: &str, title: String, body: String, labels: Vec<String>) -> u64 {
        let id = self.id();
        let at = self.touch(repo);
        let repo = &mut self.repos[repo];
        repo.own_updated = at;
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
            reactions: Vec::new(),
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
            reactions: Vec::new(),
        });
        item.updated = at;
        id
    }

    /// GraphQL's views of `repo`'s items are built again: something in them changed that
    /// does not move any `updated_at` (a reaction, a status, a check run).
    fn changed(&mut self, repo: usize) {
        self.graphql_items
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(r, _), _| *r != repo);
    }

    /// `user` reacts to item `number` (which must exist), or to its comment `comment`;
    /// `None` when there is no such comment. A user's same reaction twice is one, as on
    /// GitHub.
    pub fn react(&mut self, repo: usize, number: u64, comment: Option<u64>, content: &str, user: &str) -> Option<()> {
        self.changed(repo);
        let item = self.repos[repo].item_mut(number).expect("checked item");
        let reactions = match comment {
            None => &mut item.reactions,
            Some(id) => &mut item.comments.iter_mut().find(|c| c.id == id)?.reactions,
        };
        let reaction = Reaction {
            content: content.to_string(),
            user: user.to_string(),
        };
        if !reactions.contains(&reaction) {
            reactions.push(reaction);
        }
        Some(())
    }

    /// The repository and item number of issue comment `id`.
    pub fn find_comment(&self, repo: usize, id: u64) -> Option<u64> {
        self.repos[repo]
            .items
            .iter()
            .find(|item| item.comments.iter().any(|c| c.id == id))
            .map(|item| item.number)
    }

    /// A push of one commit to pull request `number`'s head branch (a git push, not an API
    /// call): its head moves, and so does its `updated_at`. `None` when it is no pull
    /// request. Returns the new head SHA.
    pub fn push(&mut self, repo: usize, number: u64) -> Option<String> {
        let sha = format!("{:040x}", self.id());
        self.repos[repo].item(number)?.pull.as_ref()?;
        self.edit(repo, number, |item| {
            if let Some(pull) = &mut item.pull {
                pull.commits.push(sha.clone());
            }
        });
        Some(sha)
    }

    /// A commit status for `sha`; it moves no issue's `updated_at`.
    pub fn add_status(&mut self, repo: usize, sha: &str, context: &str, state: &str) -> Status {
        let status = Status {
            id: self.id(),
            sha: sha.to_string(),
            context: context.to_string(),
            state: state.to_string(),
            created: now_ms(),
        };
        self.changed(repo);
        self.repos[repo].statuses.push(status.clone());
        status
    }

    /// A check run for `sha`; it moves no issue's `updated_at`.
    pub fn add_check_run(
        &mut self,
        repo: usize,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) -> CheckRun {
        let run = CheckRun {
            id: self.id(),
            sha: sha.to_string(),
            name: name.to_string(),
            status: status.to_string(),
            conclusion: conclusion.map(str::to_string),
            started: now_ms(),
        };
        self.changed(repo);
        self.repos[repo].check_runs.push(run.clone());
        run
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
        if item.open != was_open {
            self.repos[repo].own_updated = at;
        }
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
