package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

// users runs `relay users create|list`.
func users(cfg *relay.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("users: want create or list")
	}
	return withStore(cfg, log, func(ctx context.Context, st *sqlite.Store) error {
		switch args[0] {
		case "create":
			fs := flag.NewFlagSet("users create", flag.ContinueOnError)
			name := fs.String("name", "", "user name (required, unique)")
			admin := fs.Bool("admin", false, "the user may use the data-management routes")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			if *name == "" {
				return errors.New("users create: --name is required")
			}
			role := store.RoleUser
			if *admin {
				role = store.RoleAdmin
			}
			u, err := st.CreateUser(ctx, store.User{Name: *name, Role: role})
			if errors.Is(err, store.ErrExists) {
				return fmt.Errorf("users create: a user named %q exists", *name)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d\t%s\t%s\n", u.ID, u.Name, u.Role)
			return nil
		case "list":
			list, err := st.ListUsers(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED")
			for _, u := range list {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", u.ID, u.Name, u.Role, u.CreatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		}
		return fmt.Errorf("users: unknown subcommand %q", args[0])
	})
}

// findUser reads a user by name, or by numeric id when no user has that name.
func findUser(ctx context.Context, st store.Users, nameOrID string) (store.User, error) {
	u, err := st.UserByName(ctx, nameOrID)
	if errors.Is(err, store.ErrNotFound) {
		if id, perr := strconv.ParseInt(nameOrID, 10, 64); perr == nil {
			u, err = st.UserByID(ctx, id)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return u, fmt.Errorf("no user %q (create one with `relay users create --name NAME`)", nameOrID)
	}
	return u, err
}

// token runs `relay token issue --user NAME|ID [--ttl D]`: it prints a JWT for the session surface.
func token(cfg *relay.Config, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "issue" {
		return errors.New("token: want issue --user NAME|ID [--ttl DURATION]")
	}
	fs := flag.NewFlagSet("token issue", flag.ContinueOnError)
	user := fs.String("user", "", "user name or id (required)")
	ttl := fs.Duration("ttl", 0, "token lifetime (default auth.token_ttl)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token issue: --user is required")
	}
	key, err := cfg.Auth.JWT.JWTKey()
	if err != nil {
		return fmt.Errorf("token issue: %w", err)
	}
	if *ttl < 0 {
		return errors.New("token issue: --ttl must be positive")
	}
	if *ttl == 0 {
		*ttl = cfg.Auth.JWT.TTL()
	}
	return withStore(cfg, log, func(ctx context.Context, st *sqlite.Store) error {
		u, err := findUser(ctx, st, *user)
		if err != nil {
			return fmt.Errorf("token issue: %w", err)
		}
		tok, err := relay.IssueToken(key, u, *ttl, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	})
}
