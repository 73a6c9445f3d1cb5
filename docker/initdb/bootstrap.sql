REVOKE ALL ON DATABASE "wholecare" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_identity_owner') THEN
    CREATE ROLE "wc_identity_owner" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_identity_owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_identity_owner_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_identity_owner";
ALTER ROLE "wc_identity_owner" IN DATABASE "wholecare" SET search_path = "identity";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_identity_app') THEN
    CREATE ROLE "wc_identity_app" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_identity_app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_identity_app_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_identity_app";
ALTER ROLE "wc_identity_app" IN DATABASE "wholecare" SET search_path = "identity";
CREATE SCHEMA IF NOT EXISTS "identity" AUTHORIZATION "wc_identity_owner";
ALTER SCHEMA "identity" OWNER TO "wc_identity_owner";
REVOKE ALL ON SCHEMA "identity" FROM PUBLIC;
GRANT USAGE ON SCHEMA "identity" TO "wc_identity_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_identity_owner" IN SCHEMA "identity" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "wc_identity_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_identity_owner" IN SCHEMA "identity" GRANT USAGE, SELECT ON SEQUENCES TO "wc_identity_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_identity_owner" IN SCHEMA "identity" GRANT EXECUTE ON FUNCTIONS TO "wc_identity_app";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_records_owner') THEN
    CREATE ROLE "wc_records_owner" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_records_owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_records_owner_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_records_owner";
ALTER ROLE "wc_records_owner" IN DATABASE "wholecare" SET search_path = "records";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_records_app') THEN
    CREATE ROLE "wc_records_app" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_records_app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_records_app_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_records_app";
ALTER ROLE "wc_records_app" IN DATABASE "wholecare" SET search_path = "records";
CREATE SCHEMA IF NOT EXISTS "records" AUTHORIZATION "wc_records_owner";
ALTER SCHEMA "records" OWNER TO "wc_records_owner";
REVOKE ALL ON SCHEMA "records" FROM PUBLIC;
GRANT USAGE ON SCHEMA "records" TO "wc_records_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_records_owner" IN SCHEMA "records" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "wc_records_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_records_owner" IN SCHEMA "records" GRANT USAGE, SELECT ON SEQUENCES TO "wc_records_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_records_owner" IN SCHEMA "records" GRANT EXECUTE ON FUNCTIONS TO "wc_records_app";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_ledger_owner') THEN
    CREATE ROLE "wc_ledger_owner" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_ledger_owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_ledger_owner_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_ledger_owner";
ALTER ROLE "wc_ledger_owner" IN DATABASE "wholecare" SET search_path = "ledger";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_ledger_app') THEN
    CREATE ROLE "wc_ledger_app" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_ledger_app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_ledger_app_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_ledger_app";
ALTER ROLE "wc_ledger_app" IN DATABASE "wholecare" SET search_path = "ledger";
CREATE SCHEMA IF NOT EXISTS "ledger" AUTHORIZATION "wc_ledger_owner";
ALTER SCHEMA "ledger" OWNER TO "wc_ledger_owner";
REVOKE ALL ON SCHEMA "ledger" FROM PUBLIC;
GRANT USAGE ON SCHEMA "ledger" TO "wc_ledger_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_ledger_owner" IN SCHEMA "ledger" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "wc_ledger_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_ledger_owner" IN SCHEMA "ledger" GRANT USAGE, SELECT ON SEQUENCES TO "wc_ledger_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_ledger_owner" IN SCHEMA "ledger" GRANT EXECUTE ON FUNCTIONS TO "wc_ledger_app";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_engagement_owner') THEN
    CREATE ROLE "wc_engagement_owner" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_engagement_owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_engagement_owner_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_engagement_owner";
ALTER ROLE "wc_engagement_owner" IN DATABASE "wholecare" SET search_path = "engagement";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_engagement_app') THEN
    CREATE ROLE "wc_engagement_app" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_engagement_app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_engagement_app_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_engagement_app";
ALTER ROLE "wc_engagement_app" IN DATABASE "wholecare" SET search_path = "engagement";
CREATE SCHEMA IF NOT EXISTS "engagement" AUTHORIZATION "wc_engagement_owner";
ALTER SCHEMA "engagement" OWNER TO "wc_engagement_owner";
REVOKE ALL ON SCHEMA "engagement" FROM PUBLIC;
GRANT USAGE ON SCHEMA "engagement" TO "wc_engagement_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_engagement_owner" IN SCHEMA "engagement" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "wc_engagement_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_engagement_owner" IN SCHEMA "engagement" GRANT USAGE, SELECT ON SEQUENCES TO "wc_engagement_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_engagement_owner" IN SCHEMA "engagement" GRANT EXECUTE ON FUNCTIONS TO "wc_engagement_app";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_directory_owner') THEN
    CREATE ROLE "wc_directory_owner" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_directory_owner" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_directory_owner_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_directory_owner";
ALTER ROLE "wc_directory_owner" IN DATABASE "wholecare" SET search_path = "directory";
DO $bootstrap$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'wc_directory_app') THEN
    CREATE ROLE "wc_directory_app" LOGIN;
  END IF;
END $bootstrap$;
ALTER ROLE "wc_directory_app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD :'wc_directory_app_password';
GRANT CONNECT ON DATABASE "wholecare" TO "wc_directory_app";
ALTER ROLE "wc_directory_app" IN DATABASE "wholecare" SET search_path = "directory";
CREATE SCHEMA IF NOT EXISTS "directory" AUTHORIZATION "wc_directory_owner";
ALTER SCHEMA "directory" OWNER TO "wc_directory_owner";
REVOKE ALL ON SCHEMA "directory" FROM PUBLIC;
GRANT USAGE ON SCHEMA "directory" TO "wc_directory_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_directory_owner" IN SCHEMA "directory" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "wc_directory_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_directory_owner" IN SCHEMA "directory" GRANT USAGE, SELECT ON SEQUENCES TO "wc_directory_app";
ALTER DEFAULT PRIVILEGES FOR ROLE "wc_directory_owner" IN SCHEMA "directory" GRANT EXECUTE ON FUNCTIONS TO "wc_directory_app";
