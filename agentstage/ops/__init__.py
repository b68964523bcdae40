"""Operations commands: load tests and incident response over what is deployed."""
