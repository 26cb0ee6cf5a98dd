-- First start of the compose PostgreSQL: the CRM's database and role (reached through Vigil's
-- pg proxy) and the incident service's store. Passwords match docker-compose.yml.
CREATE ROLE crm_app LOGIN PASSWORD 'crm-password-change-me';
CREATE DATABASE crm OWNER crm_app;
CREATE ROLE vigil LOGIN PASSWORD 'vigil';
CREATE DATABASE vigil OWNER vigil;
