package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Client talks to agentcgroupd over its unix socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the socket path.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// APIError is an error the daemon returned, with its HTTP status.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

func (c *Client) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://agentcgroupd"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("cannot reach agentcgroupd at %s: %v (is the daemon running? set --socket to its socket)", c.Socket, ne.Err)
		}
		return fmt.Errorf("agentcgroupd at %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Msg: e.Error}
		}
		return &APIError{Status: resp.StatusCode, Msg: fmt.Sprintf("agentcgroupd: %s", resp.Status)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("agentcgroupd sent a bad reply to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// StartSession creates a session.
func (c *Client) StartSession(r SessionRequest) (Session, error) {
	var s Session
	return s, c.do("POST", "/v1/sessions", r, &s)
}

// EndSession removes a session; force kills its live steps.
func (c *Client) EndSession(id string, force bool) error {
	q := ""
	if force {
		q = "?force=1"
	}
	return c.do("DELETE", "/v1/sessions/"+url.PathEscape(id)+q, nil, nil)
}

// CreateStep creates a step cgroup with its policy applied.
func (c *Client) CreateStep(r StepRequest) (Step, error) {
	var s Step
	return s, c.do("POST", "/v1/steps", r, &s)
}

// Step returns one step's state.
func (c *Client) Step(session, step string) (Step, error) {
	var s Step
	return s, c.do("GET", "/v1/steps/"+url.PathEscape(session)+"/"+url.PathEscape(step), nil, &s)
}

// DeleteStep removes a step, killing anything left in it.
func (c *Client) DeleteStep(session, step string) error {
	return c.do("DELETE", "/v1/steps/"+url.PathEscape(session)+"/"+url.PathEscape(step), nil, nil)
}

// Status returns the daemon's view.
func (c *Client) Status() (Status, error) {
	var s Status
	return s, c.do("GET", "/v1/status", nil, &s)
}

// Reload asks the daemon to re-read its policy file (as SIGHUP does).
func (c *Client) Reload() error { return c.do("POST", "/v1/reload", nil, nil) }
