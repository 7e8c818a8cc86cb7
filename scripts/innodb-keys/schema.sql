-- Four tables holding the same payment rows; only the primary key differs.
-- Every table carries the same secondary index on created_at, so its size shows what the primary key
-- appended to each secondary entry costs. The surrogate-keyed tables also need a unique secondary index
-- on the natural key (for idempotency and per-merchant queries); the natural-keyed table gets that for
-- free from its clustered index.

CREATE TABLE t_autoinc (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  merchant_id  INT UNSIGNED NOT NULL,
  txn_date     DATE NOT NULL,
  seq          INT UNSIGNED NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  amount_minor BIGINT NOT NULL,
  currency     CHAR(3) CHARACTER SET ascii NOT NULL,
  status       TINYINT UNSIGNED NOT NULL,
  reference    CHAR(20) CHARACTER SET ascii NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uk_merchant_day_seq (merchant_id, txn_date, seq),
  KEY ix_created_at (created_at)
) ENGINE=InnoDB;

CREATE TABLE t_uuid4 LIKE t_autoinc;
ALTER TABLE t_uuid4 MODIFY id BINARY(16) NOT NULL;

CREATE TABLE t_uuid7 LIKE t_uuid4;

CREATE TABLE t_natural (
  merchant_id  INT UNSIGNED NOT NULL,
  txn_date     DATE NOT NULL,
  seq          INT UNSIGNED NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  amount_minor BIGINT NOT NULL,
  currency     CHAR(3) CHARACTER SET ascii NOT NULL,
  status       TINYINT UNSIGNED NOT NULL,
  reference    CHAR(20) CHARACTER SET ascii NOT NULL,
  PRIMARY KEY (merchant_id, txn_date, seq),
  KEY ix_created_at (created_at)
) ENGINE=InnoDB;

-- The rows, generated once and copied into each table in arrival (time) order.
CREATE TABLE staging (
  i            INT UNSIGNED NOT NULL,
  merchant_id  INT UNSIGNED NOT NULL,
  txn_date     DATE NOT NULL,
  seq          INT UNSIGNED NOT NULL,
  created_at   DATETIME(6) NOT NULL,
  amount_minor BIGINT NOT NULL,
  currency     CHAR(3) CHARACTER SET ascii NOT NULL,
  status       TINYINT UNSIGNED NOT NULL,
  reference    CHAR(20) CHARACTER SET ascii NOT NULL,
  u4           BINARY(16) NOT NULL,
  u7           BINARY(16) NOT NULL,
  PRIMARY KEY (i)
) ENGINE=InnoDB;
