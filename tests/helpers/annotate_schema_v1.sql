CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	PRIMARY KEY (version)
);
CREATE TABLE users (
	id INTEGER NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	active BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (username)
);
CREATE TABLE projects (
	id INTEGER NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	reviews_per_image INTEGER NOT NULL, 
	source TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
CREATE TABLE auth_sessions (
	id VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	csrf_token VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_auth_sessions_user_id ON auth_sessions (user_id);
CREATE TABLE members (
	project_id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	PRIMARY KEY (project_id, user_id), 
	FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE rounds (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	stage INTEGER NOT NULL, 
	job_id INTEGER, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE, 
	UNIQUE (job_id)
);
CREATE INDEX ix_rounds_project_id ON rounds (project_id);
CREATE TABLE jobs (
	id INTEGER NOT NULL, 
	project_id INTEGER, 
	kind VARCHAR(16) NOT NULL, 
	params TEXT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	progress FLOAT NOT NULL, 
	message TEXT NOT NULL, 
	error TEXT NOT NULL, 
	result TEXT NOT NULL, 
	attempts INTEGER NOT NULL, 
	cancel_requested BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	finished_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE
);
CREATE INDEX ix_jobs_state ON jobs (state);
CREATE INDEX ix_jobs_project_id ON jobs (project_id);
CREATE TABLE images (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	path TEXT NOT NULL, 
	width INTEGER NOT NULL, 
	height INTEGER NOT NULL, 
	manual_path TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	round_id INTEGER, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (project_id, name), 
	FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE, 
	FOREIGN KEY(round_id) REFERENCES rounds (id)
);
CREATE INDEX ix_images_project_id ON images (project_id);
CREATE INDEX ix_images_status ON images (status);
CREATE TABLE candidates (
	id INTEGER NOT NULL, 
	image_id INTEGER NOT NULL, 
	round_id INTEGER NOT NULL, 
	stage INTEGER NOT NULL, 
	origin VARCHAR(16) NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	fold INTEGER, 
	mask_path TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(image_id) REFERENCES images (id) ON DELETE CASCADE, 
	FOREIGN KEY(round_id) REFERENCES rounds (id) ON DELETE CASCADE
);
CREATE INDEX ix_candidates_round_id ON candidates (round_id);
CREATE INDEX ix_candidates_image_id ON candidates (image_id);
CREATE TABLE reviews (
	id INTEGER NOT NULL, 
	token VARCHAR(64) NOT NULL, 
	image_id INTEGER NOT NULL, 
	round_id INTEGER NOT NULL, 
	reviewer_id INTEGER NOT NULL, 
	"order" TEXT NOT NULL, 
	labels TEXT NOT NULL, 
	tokens TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	decision VARCHAR(16), 
	choice_id INTEGER, 
	choice_position INTEGER, 
	start_from_id INTEGER, 
	drawn_path TEXT, 
	digest VARCHAR(64), 
	opened_at DATETIME NOT NULL, 
	last_active_at DATETIME NOT NULL, 
	submitted_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (round_id, image_id, reviewer_id), 
	UNIQUE (token), 
	FOREIGN KEY(image_id) REFERENCES images (id) ON DELETE CASCADE, 
	FOREIGN KEY(round_id) REFERENCES rounds (id) ON DELETE CASCADE, 
	FOREIGN KEY(reviewer_id) REFERENCES users (id), 
	FOREIGN KEY(choice_id) REFERENCES candidates (id), 
	FOREIGN KEY(start_from_id) REFERENCES candidates (id)
);
CREATE INDEX ix_reviews_reviewer_id ON reviews (reviewer_id);
CREATE INDEX ix_reviews_round_id ON reviews (round_id);
CREATE INDEX ix_reviews_status ON reviews (status);
CREATE INDEX ix_reviews_image_id ON reviews (image_id);
CREATE TABLE drafts (
	review_id INTEGER NOT NULL, 
	seq BIGINT NOT NULL, 
	state TEXT NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (review_id), 
	FOREIGN KEY(review_id) REFERENCES reviews (id) ON DELETE CASCADE
);
CREATE TABLE accepted_masks (
	id INTEGER NOT NULL, 
	image_id INTEGER NOT NULL, 
	round_id INTEGER NOT NULL, 
	stage INTEGER NOT NULL, 
	decision VARCHAR(16) NOT NULL, 
	candidate_id INTEGER, 
	review_id INTEGER NOT NULL, 
	mask_path TEXT NOT NULL, 
	accepted_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (image_id), 
	FOREIGN KEY(image_id) REFERENCES images (id) ON DELETE CASCADE, 
	FOREIGN KEY(round_id) REFERENCES rounds (id), 
	FOREIGN KEY(candidate_id) REFERENCES candidates (id), 
	FOREIGN KEY(review_id) REFERENCES reviews (id)
);
