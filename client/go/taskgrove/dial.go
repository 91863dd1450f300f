package taskgrove

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/ioutil"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	taskgrovev1 "taskgrove.dev/go/taskgrove/v1"
)

// DefaultAddress is used when neither Options.Address nor TASKGROVE_ADDRESS is set.
const DefaultAddress = "127.0.0.1:50051"

// Options configure Dial. Empty fields default to the environment variables
// TASKGROVE_ADDRESS, TASKGROVE_TOKEN, TASKGROVE_CA_FILE, TASKGROVE_CERT_FILE and
// TASKGROVE_KEY_FILE. Without a CA file the connection is plaintext.
type Options struct {
	Address  string
	Token    string
	CAFile   string
	CertFile string
	KeyFile  string
	// DialOptions are appended to the client's own.
	DialOptions []grpc.DialOption
}

// Client is a connection to a taskgrove server.
type Client struct {
	// Tasks is the generated TaskService client.
	Tasks taskgrovev1.TaskServiceClient
	conn  *grpc.ClientConn
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func envDefault(value, name string) string {
	if value != "" {
		return value
	}
	return os.Getenv(name)
}

// WithEnv returns the options with empty fields filled from the environment.
func (o Options) WithEnv() Options {
	o.Address = envDefault(o.Address, "TASKGROVE_ADDRESS")
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	o.Token = envDefault(o.Token, "TASKGROVE_TOKEN")
	o.CAFile = envDefault(o.CAFile, "TASKGROVE_CA_FILE")
	o.CertFile = envDefault(o.CertFile, "TASKGROVE_CERT_FILE")
	o.KeyFile = envDefault(o.KeyFile, "TASKGROVE_KEY_FILE")
	return o
}

// Dial connects to the server described by opts (completed from the environment).
// The connection is made lazily; ctx bounds only the setup.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	opts = opts.WithEnv()
	dialOpts := []grpc.DialOption{}
	secure := opts.CAFile != ""
	if secure {
		creds, err := tlsCredentials(opts)
		if err != nil {
			return nil, err
		}
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
	} else {
		dialOpts = append(dialOpts, grpc.WithInsecure())
	}
	if opts.Token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer{token: opts.Token, secure: secure}))
	}
	dialOpts = append(dialOpts, opts.DialOptions...)
	conn, err := grpc.DialContext(ctx, opts.Address, dialOpts...)
	if err != nil {
		return nil, err
	}
	return &Client{Tasks: taskgrovev1.NewTaskServiceClient(conn), conn: conn}, nil
}

func tlsCredentials(opts Options) (credentials.TransportCredentials, error) {
	pem, err := ioutil.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("taskgrove: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("taskgrove: CA file holds no PEM certificate")
	}
	config := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if opts.CertFile != "" || opts.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("taskgrove: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(config), nil
}

// bearer sends the token as `authorization: Bearer <token>` metadata on every RPC.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }
