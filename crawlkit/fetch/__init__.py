"""The fetcher processes: a Pool of workers, each with threads that send requests and read bodies."""
